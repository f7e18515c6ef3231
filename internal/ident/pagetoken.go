package ident

import "encoding/base64"

// PageToken is the page token of a list in node ID order whose page ended
// at lastID. Clients treat it as opaque; every list of nodes uses the same
// one, so that a token is checked by one rule.
func PageToken(lastID string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(lastID))
}

// AfterPageToken returns the node ID a PageToken holds, "" for the empty
// token (the first page), or false for anything no PageToken can be.
func AfterPageToken(token string) (string, bool) {
	if token == "" {
		return "", true
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || NodeID(string(b)) != nil {
		return "", false
	}
	return string(b), true
}
