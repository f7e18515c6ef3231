package bundle

import (
	"bytes"
	"cmp"
	"compress/flate"
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"slices"
)

// Unix mode bits of the payload, and their io/fs counterparts.
const (
	unixSetuid = 0o4000
	unixSetgid = 0o2000
	unixSticky = 0o1000

	// allowedModes are the fs.FileMode bits a bundle file may carry.
	allowedModes = fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky
)

// Fixed sizes of the payload encoding.
const (
	countSize   = 4
	fileFixed   = 2 + 2 + 1 + 1 + 4 // path_len, mode, owner_len, group_len, size
	maxElemSize = 255
)

func unixMode(m fs.FileMode) uint16 {
	u := uint16(m & fs.ModePerm)
	if m&fs.ModeSetuid != 0 {
		u |= unixSetuid
	}
	if m&fs.ModeSetgid != 0 {
		u |= unixSetgid
	}
	if m&fs.ModeSticky != 0 {
		u |= unixSticky
	}
	return u
}

// fileMode is unixMode's inverse; ok is false for bits outside 0o7777.
func fileMode(u uint16) (fs.FileMode, bool) {
	if u&^0o7777 != 0 {
		return 0, false
	}
	m := fs.FileMode(u & 0o777)
	if u&unixSetuid != 0 {
		m |= fs.ModeSetuid
	}
	if u&unixSetgid != 0 {
		m |= fs.ModeSetgid
	}
	if u&unixSticky != 0 {
		m |= fs.ModeSticky
	}
	return m, true
}

// encode checks files and writes the payload, files sorted by path.
func encode(files []File) ([]byte, error) {
	if err := Validate(files); err != nil {
		return nil, err
	}
	sorted := slices.Clone(files)
	slices.SortFunc(sorted, func(a, b File) int { return cmp.Compare(a.Path, b.Path) })
	size := countSize
	for _, f := range sorted {
		size += fileFixed + len(f.Path) + len(f.Owner) + len(f.Group) + len(f.Content)
		if size > MaxPayload {
			return nil, fmt.Errorf("%w: files add up to more than %d bytes", ErrTooLarge, MaxPayload)
		}
	}
	b := make([]byte, 0, size)
	b = binary.BigEndian.AppendUint32(b, uint32(len(sorted)))
	for _, f := range sorted {
		b = binary.BigEndian.AppendUint16(b, uint16(len(f.Path)))
		b = append(b, f.Path...)
		b = binary.BigEndian.AppendUint16(b, unixMode(f.Mode))
		b = append(b, byte(len(f.Owner)))
		b = append(b, f.Owner...)
		b = append(b, byte(len(f.Group)))
		b = append(b, f.Group...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(f.Content)))
		b = append(b, f.Content...)
	}
	return b, nil
}

// decoder reads a payload, failing with ErrFormat on truncation.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.b) {
		d.err = fmt.Errorf("%w: payload truncated", ErrFormat)
		return nil
	}
	out := d.b[:n:n]
	d.b = d.b[n:]
	return out
}

func (d *decoder) u8() int {
	if b := d.take(1); b != nil {
		return int(b[0])
	}
	return 0
}

func (d *decoder) u16() int {
	if b := d.take(2); b != nil {
		return int(binary.BigEndian.Uint16(b))
	}
	return 0
}

// u32 clamps to MaxPayload+1: nothing in a payload is longer than the
// payload, so take then reports the truncation, and the conversion to int
// stays safe where int has 32 bits.
func (d *decoder) u32() int {
	if b := d.take(4); b != nil {
		return int(min(binary.BigEndian.Uint32(b), MaxPayload+1))
	}
	return 0
}

// decode parses a payload and checks its files, including that they come
// sorted and unique, which makes the encoding canonical.
func decode(payload []byte) ([]File, error) {
	d := &decoder{b: payload}
	n := d.u32()
	if n > MaxFiles {
		return nil, fmt.Errorf("%w: more than %d files", ErrTooLarge, MaxFiles)
	}
	// Every file takes at least fileFixed bytes, so a count the payload
	// cannot hold is refused before anything is allocated for it.
	if d.err == nil && n > len(d.b)/fileFixed {
		return nil, fmt.Errorf("%w: payload truncated", ErrFormat)
	}
	files := make([]File, 0, n)
	for i := range n {
		var f File
		f.Path = string(d.take(d.u16()))
		mode, ok := fileMode(uint16(d.u16()))
		f.Owner = string(d.take(d.u8()))
		f.Group = string(d.take(d.u8()))
		f.Content = d.take(d.u32())
		if d.err != nil {
			return nil, d.err
		}
		if !ok {
			return nil, fmt.Errorf("%w: file %d: mode has bits other than 0o7777", ErrInvalidFile, i)
		}
		f.Mode = mode
		if i > 0 && f.Path <= files[i-1].Path {
			return nil, fmt.Errorf("%w: file %d: paths are not sorted and unique", ErrFormat, i)
		}
		files = append(files, f)
	}
	if d.err == nil && len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last file", ErrFormat, len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	if err := Validate(files); err != nil {
		return nil, err
	}
	return files, nil
}

func deflate(payload []byte) ([]byte, error) {
	var buf bytes.Buffer
	w, err := flate.NewWriter(&buf, flate.DefaultCompression)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(payload); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// inflate decompresses r, reading at most one byte beyond MaxPayload so
// that a decompression bomb costs no more than the limit.
func inflate(r io.Reader) ([]byte, error) {
	fr := flate.NewReader(r)
	defer fr.Close()
	payload, err := io.ReadAll(io.LimitReader(fr, MaxPayload+1))
	if err != nil {
		return nil, fmt.Errorf("%w: payload does not inflate", ErrFormat)
	}
	if len(payload) > MaxPayload {
		return nil, fmt.Errorf("%w: payload inflates to more than %d bytes", ErrTooLarge, MaxPayload)
	}
	return payload, nil
}
