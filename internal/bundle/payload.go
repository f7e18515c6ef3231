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
	"time"
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
	countSize     = 4
	fileFixed     = 2 + 2 + 1 + 1 + 4 // path_len, mode, owner_len, group_len, size
	hookCountSize = 2
	hookFixed     = 1 + 2 + 4 // argc, path_count, timeout_ms
	maxElemSize   = 255
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

// encode checks c and writes the payload, files sorted by path and each
// hook's paths too.
func encode(c Contents) ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	sorted := slices.Clone(c.Files)
	slices.SortFunc(sorted, func(a, b File) int { return cmp.Compare(a.Path, b.Path) })
	size := countSize + hookCountSize
	for _, f := range sorted {
		size += fileFixed + len(f.Path) + len(f.Owner) + len(f.Group) + len(f.Content)
		if size > MaxPayload {
			return nil, fmt.Errorf("%w: files add up to more than %d bytes", ErrTooLarge, MaxPayload)
		}
	}
	for _, h := range c.Hooks {
		size += hookFixed
		for _, a := range h.Command {
			size += 2 + len(a)
		}
		for _, p := range h.Paths {
			size += 2 + len(p)
		}
		if size > MaxPayload {
			return nil, fmt.Errorf("%w: files and hooks add up to more than %d bytes", ErrTooLarge, MaxPayload)
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
	b = binary.BigEndian.AppendUint16(b, uint16(len(c.Hooks)))
	for _, h := range c.Hooks {
		b = append(b, byte(len(h.Command)))
		for _, a := range h.Command {
			b = binary.BigEndian.AppendUint16(b, uint16(len(a)))
			b = append(b, a...)
		}
		paths := slices.Clone(h.Paths)
		slices.Sort(paths)
		b = binary.BigEndian.AppendUint16(b, uint16(len(paths)))
		for _, p := range paths {
			b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
			b = append(b, p...)
		}
		b = binary.BigEndian.AppendUint32(b, uint32(h.Timeout/time.Millisecond))
	}
	return b, nil
}

// decoder reads a payload or a signature block, failing with ErrFormat on
// truncation.
type decoder struct {
	b    []byte
	what string
	err  error
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.b) {
		d.err = fmt.Errorf("%w: %s truncated", ErrFormat, d.what)
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

// u32raw is a u32 as it is, for values that are not lengths.
func (d *decoder) u32raw() uint32 {
	if b := d.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if b := d.take(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

// decode parses a payload and checks its contents, including that files
// and each hook's paths come sorted and unique, which makes the encoding
// canonical.
func decode(payload []byte) (Contents, error) {
	d := &decoder{b: payload, what: "payload"}
	n := d.u32()
	if n > MaxFiles {
		return Contents{}, fmt.Errorf("%w: more than %d files", ErrTooLarge, MaxFiles)
	}
	// Every file takes at least fileFixed bytes, so a count the payload
	// cannot hold is refused before anything is allocated for it.
	if d.err == nil && n > len(d.b)/fileFixed {
		return Contents{}, fmt.Errorf("%w: payload truncated", ErrFormat)
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
			return Contents{}, d.err
		}
		if !ok {
			return Contents{}, fmt.Errorf("%w: file %d: mode has bits other than 0o7777", ErrInvalidFile, i)
		}
		f.Mode = mode
		if i > 0 && f.Path <= files[i-1].Path {
			return Contents{}, fmt.Errorf("%w: file %d: paths are not sorted and unique", ErrFormat, i)
		}
		files = append(files, f)
	}
	hooks, err := decodeHooks(d)
	if err != nil {
		return Contents{}, err
	}
	if len(d.b) != 0 {
		return Contents{}, fmt.Errorf("%w: %d bytes after the last hook", ErrFormat, len(d.b))
	}
	c := Contents{Files: files, Hooks: hooks}
	if err := c.Validate(); err != nil {
		return Contents{}, err
	}
	return c, nil
}

// decodeHooks reads the hook section of a payload.
func decodeHooks(d *decoder) ([]Hook, error) {
	n := d.u16()
	if d.err != nil {
		return nil, d.err
	}
	if n > MaxHooks {
		return nil, fmt.Errorf("%w: more than %d hooks", ErrTooLarge, MaxHooks)
	}
	var hooks []Hook
	for i := range n {
		var h Hook
		argc := d.u8()
		if d.err == nil && (argc == 0 || argc > MaxHookArgs) {
			return nil, fmt.Errorf("%w: hook %d: %d arguments, want 1 to %d", ErrInvalidHook, i, argc, MaxHookArgs)
		}
		for range argc {
			h.Command = append(h.Command, string(d.take(d.u16())))
		}
		np := d.u16()
		if d.err == nil && np > len(d.b)/2 {
			return nil, fmt.Errorf("%w: payload truncated", ErrFormat)
		}
		for j := range np {
			p := string(d.take(d.u16()))
			if d.err == nil && j > 0 && p <= h.Paths[j-1] {
				return nil, fmt.Errorf("%w: hook %d: paths are not sorted and unique", ErrFormat, i)
			}
			h.Paths = append(h.Paths, p)
		}
		h.Timeout = time.Duration(d.u32raw()) * time.Millisecond
		if d.err != nil {
			return nil, d.err
		}
		hooks = append(hooks, h)
	}
	return hooks, nil
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
