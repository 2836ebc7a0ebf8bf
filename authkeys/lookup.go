package authkeys

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
)

// lookup answers for one user from a v2 file whose size and checksum
// checkSeal has verified, without reading every line: it checks the
// header lines and the revoked lines in full, finds the user's line by
// binary search over the user lines (which v2 has in increasing order of
// their names), and checks in full that line and the lines either side,
// which shows the user is listed once. A user without a line gets a
// cache without that user, which denies.
//
// The checksum stands for the lines it does not read: Marshal wrote
// them valid and in order, and a file damaged since does not match it.
// A file that matches its checksum and still holds a bad line elsewhere
// was not written by Marshal: ParseCache refuses it, lookup may answer
// from it (from lines it has checked). Only someone who can write the
// cache can make one, and they could as well write any policy.
func lookup(data []byte, user string) (*Cache, error) {
	p := &parser{c: &Cache{Users: map[string]Access{}}, only: user, format: v2}
	off := bytes.IndexByte(data, '\n') + 1 // checkSeal found line 1
	for i, k := range headerLines {
		line, next, err := lineAt(data, off, len(data))
		if err != nil {
			return nil, err
		}
		kw, args, _ := cut(line, ' ')
		if string(kw) != k {
			return nil, lineErr(data, off, fmt.Errorf("%q where format v2 has the %q line", trunc(string(kw)), k))
		}
		p.seen[i] = true
		if err := p.header(k, string(args)); err != nil {
			return nil, lineErr(data, off, err)
		}
		off = next
	}
	// The signer lines, if any, follow the header lines.
	for bytes.HasPrefix(data[off:], []byte("signer ")) {
		line, next, err := lineAt(data, off, len(data))
		if err != nil {
			return nil, err
		}
		if err := p.signer(line[len("signer "):]); err != nil {
			return nil, lineErr(data, off, err)
		}
		off = next
	}

	users, end := off, len(data)-len("end\n")
	if end < users || string(data[end:]) != "end\n" || data[end-1] != '\n' {
		return nil, errors.New("cache is truncated (no end line)")
	}
	// The revoked lines are the last before end: found backwards, read
	// in file order.
	var revoked []int
	for end > users {
		s := lineStart(data, users, end-1)
		if !bytes.HasPrefix(data[s:end], []byte("revoked ")) {
			break
		}
		revoked = append(revoked, s)
		end = s
	}
	for _, s := range slices.Backward(revoked) {
		line, _, err := lineAt(data, s, len(data))
		if err != nil {
			return nil, err
		}
		if err := p.revokedLine(line[len("revoked "):]); err != nil {
			return nil, lineErr(data, s, err)
		}
	}

	// The user lines are data[users:end]. Find the first whose name is
	// not less than user.
	target := []byte(user)
	lo, hi := users, end
	for lo < hi {
		s := lineStart(data, lo, lo+(hi-lo)/2)
		line, next, err := lineAt(data, s, end)
		if err != nil {
			return nil, err
		}
		name, err := userName(line)
		if err != nil {
			return nil, lineErr(data, s, err)
		}
		if bytes.Compare(name, target) < 0 {
			lo = next
		} else {
			hi = s
		}
	}
	// Check the line before, the user's line if it is there, and the
	// line after, in order.
	s := lo
	if lo > users {
		s = lineStart(data, users, lo-1)
	}
	for s < end {
		line, next, err := lineAt(data, s, end)
		if err != nil {
			return nil, err
		}
		kw, args, _ := cut(line, ' ')
		if _, err := userName(line); err != nil {
			return nil, lineErr(data, s, err)
		}
		if err := p.user(string(kw) == "locked", args); err != nil {
			return nil, lineErr(data, s, err)
		}
		if bytes.Compare(p.prev, target) > 0 {
			break
		}
		s = next
	}
	return p.c, nil
}

// lineStart returns where the line holding data[i] starts, not before
// min, where a line starts.
func lineStart(data []byte, min, i int) int {
	return bytes.LastIndexByte(data[min:i], '\n') + 1 + min
}

// lineAt returns the line that starts at data[s], without its newline,
// and where the next line starts; the line must end before max.
func lineAt(data []byte, s, max int) (line []byte, next int, err error) {
	i := bytes.IndexByte(data[s:max], '\n')
	if i < 0 {
		return nil, 0, errors.New("cache is truncated (no end line)")
	}
	if i > maxLine {
		return nil, 0, fmt.Errorf("cache line %d is longer than %d bytes", lineNumber(data, s), maxLine)
	}
	return data[s : s+i], s + i + 1, nil
}

// userName returns the name of a user or locked line, checked.
func userName(line []byte) ([]byte, error) {
	kw, rest, _ := cut(line, ' ')
	if string(kw) != "user" && string(kw) != "locked" {
		return nil, fmt.Errorf("%q line among the user lines", trunc(string(kw)))
	}
	name, _, ok := cut(rest, ' ')
	if !ok || !validUser(name) {
		return nil, fmt.Errorf("user line %q is not \"user NAME LOGIN,...\"", trunc(string(rest)))
	}
	return name, nil
}

// lineErr is err about the line that starts at data[s].
func lineErr(data []byte, s int, err error) error {
	return fmt.Errorf("cache line %d: %w", lineNumber(data, s), err)
}

func lineNumber(data []byte, s int) int { return bytes.Count(data[:s], []byte{'\n'}) + 1 }
