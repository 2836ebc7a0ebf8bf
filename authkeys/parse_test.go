package authkeys

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// agree fails t unless ParseCacheFor(data, user) answers what the
// check of every line answers. It reports whether the file was accepted.
//
// For format v1 that check is referenceParse, and the answers must be
// the same: the same error text, or the same policy. For format v2 it is
// the full v2 parse, which must agree with referenceParse on the same
// lines in format v1 wherever it accepts; lookup must give the same
// answer whenever the full parse accepts or the checksum does not match.
// Only a file whose first line matches lines that are not all valid (a
// writer's doing, never damage's) may be answered by lookup and refused
// by the full parse, and then only from a valid line of that user.
func agree(t testing.TB, data []byte, user string) bool {
	t.Helper()
	got, gotErr := ParseCacheFor(data, user)
	if !bytes.HasPrefix(data, []byte(HeaderV2+" ")) {
		want, wantErr := referenceParse(data, user)
		return same(t, "ParseCacheFor", "the reference", data, user, got, gotErr, want, wantErr)
	}
	want, wantErr := parseCache(data, user, false)
	if wantErr == nil {
		_, body, _ := bytes.Cut(data, []byte{'\n'})
		ref, refErr := referenceParse(append([]byte(Header+"\n"), body...), user)
		same(t, "the full v2 parse", "the reference on the same lines in v1", data, user, want, wantErr, ref, refErr)
	}
	if wantErr == nil || checkSeal(data) != nil {
		return same(t, "ParseCacheFor", "the full v2 parse", data, user, got, gotErr, want, wantErr)
	}
	// The first line matches lines the full parse refuses: lookup may
	// refuse for another line, or answer from the lines it checked.
	if gotErr != nil {
		return false
	}
	if got == nil || len(got.Users) > 1 {
		t.Fatalf("ParseCacheFor(%q) returned %+v", user, got)
	}
	if a, ok := got.Users[user]; ok && !fromValidLine(data, user, a) {
		t.Fatalf("ParseCacheFor(%q) answered %+v, from no valid line of that user; file:\n%.3000s", user, a, data)
	}
	return true
}

// same fails t unless two parses gave the same error text, or the same
// policy, and reports whether they accepted.
func same(t testing.TB, gotName, wantName string, data []byte, user string, got *Cache, gotErr error, want *Cache, wantErr error) bool {
	t.Helper()
	switch {
	case (gotErr == nil) != (wantErr == nil):
		t.Fatalf("%s(%q) error %v, %s %v; file:\n%.3000s", gotName, user, gotErr, wantName, wantErr, data)
	case gotErr != nil:
		if gotErr.Error() != wantErr.Error() {
			t.Fatalf("%s(%q) error %q, %s %q; file:\n%.3000s", gotName, user, gotErr, wantName, wantErr, data)
		}
		if got != nil {
			t.Fatalf("%s(%q) returned a cache with error %v", gotName, user, gotErr)
		}
		return false
	}
	if d := cacheDiff(got, want); d != "" {
		t.Fatalf("%s(%q) differs from %s:\n%s\nfile:\n%.3000s", gotName, user, wantName, d, data)
	}
	return true
}

// fromValidLine reports whether data has a valid user or locked line for
// user that gives a.
func fromValidLine(data []byte, user string, a Access) bool {
	for line := range strings.Lines(string(data)) {
		kw, rest, _ := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
		if kw != "user" && kw != "locked" || !strings.HasPrefix(rest, user+" ") {
			continue
		}
		p := &parser{c: &Cache{Users: map[string]Access{}}, only: user, format: v2}
		if p.user(kw == "locked", []byte(rest)) == nil {
			if b, ok := p.c.Users[user]; ok && b.Locked == a.Locked && slices.Equal(b.Logins, a.Logins) {
				return true
			}
		}
	}
	return false
}

// usersOrdered reports whether the user and locked lines of data name
// strictly increasing names: the files ParseCacheFor reads in one pass
// without a set of names.
func usersOrdered(data []byte) bool {
	var prev string
	for line := range strings.Lines(string(data)) {
		kw, rest, _ := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
		if kw != "user" && kw != "locked" {
			continue
		}
		name, _, _ := strings.Cut(rest, " ")
		if prev != "" && name <= prev {
			return false
		}
		prev = name
	}
	return true
}

// genNames are user names chosen so that generated caches hold names
// that are prefixes of one another, differ in one byte, sort around '.'
// and '-', or are not valid at all.
var genNames = []string{
	"a", "a-", "a.b", "a.b-c", "a0", "a_", "ab", "abc", "alice", "alice.b", "alice1",
	"b", "bob", "carol", "carol.smith", "z", "zz", "_", "_svc", "_svc-1",
	"u1", "u10", "u2", "u9", strings.Repeat("u", 64),
}

var genBadNames = []string{"", "A", "1a", "a,b", "a b", `a"b`, "a\x00", "-a", ".a", strings.Repeat("u", 65)}

var genLogins = []string{"root", "deploy", "_svc", "www-data", "a", "l0", strings.Repeat("l", 32)}

var genBadLogins = []string{"", "-", "Root", "ro.ot", "-root", "ro ot", "ro\rot", `r"`, "%u", strings.Repeat("l", 33)}

// genCache returns a cache file for a random policy, as Marshal writes
// it (format v2) or as teleport-node wrote it before (format v1).
func genCache(t testing.TB, rng *rand.Rand) []byte {
	c := exampleCache(t)
	c.Users = map[string]Access{}
	for range rng.IntN(12) {
		var a Access
		for range rng.IntN(4) {
			a.Logins = append(a.Logins, genLogins[rng.IntN(len(genLogins))])
		}
		a.Locked = rng.IntN(4) == 0
		c.Users[genNames[rng.IntN(len(genNames))]] = a
	}
	c.Revoked = nil
	for range rng.IntN(3) {
		ca := []string{"user", "session", "host"}[rng.IntN(3)]
		c.Revoked = append(c.Revoked, Revoked{CA: ca, Serial: 1 + rng.Uint64N(1000), Expires: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)})
	}
	if rng.IntN(2) == 0 {
		c.Mode = ModeOff
	}
	if rng.IntN(2) == 0 {
		return []byte(marshalV1(t, c))
	}
	b, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mutate damages a cache file in one of the ways a disk, an editor or a
// bug might, or rearranges it in a way Marshal never would.
func mutate(rng *rand.Rand, data []byte) []byte {
	lines := strings.SplitAfter(string(data), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) == 0 {
		return data
	}
	pick := func() int { return rng.IntN(len(lines)) }
	userLine := func() string {
		kw := []string{"user", "locked"}[rng.IntN(2)]
		name := genNames[rng.IntN(len(genNames))]
		if rng.IntN(8) == 0 {
			name = genBadNames[rng.IntN(len(genBadNames))]
		}
		var logins []string
		for range 1 + rng.IntN(3) {
			if rng.IntN(8) == 0 {
				logins = append(logins, genBadLogins[rng.IntN(len(genBadLogins))])
			} else {
				logins = append(logins, genLogins[rng.IntN(len(genLogins))])
			}
		}
		if rng.IntN(6) == 0 {
			logins = []string{"-"}
		}
		return kw + " " + name + " " + strings.Join(logins, ",") + "\n"
	}
	switch rng.IntN(9) {
	case 0: // two lines swapped
		i, j := pick(), pick()
		lines[i], lines[j] = lines[j], lines[i]
	case 1: // a line repeated, next to itself or elsewhere
		i, j := pick(), pick()
		lines = slices.Insert(lines, j, lines[i])
	case 2: // a user line added anywhere
		lines = slices.Insert(lines, pick(), userLine())
	case 3: // a user line replaced
		lines[pick()] = userLine()
	case 4: // a line lost
		i := pick()
		lines = slices.Delete(lines, i, i+1)
	case 5, 6: // a byte changed
		b := []byte(strings.Join(lines, ""))
		const chars = ",. \n-_aAz09\x00\r"
		b[rng.IntN(len(b))] = chars[rng.IntN(len(chars))]
		return b
	case 7: // cut short
		b := []byte(strings.Join(lines, ""))
		return b[:rng.IntN(len(b))]
	case 8: // the users in reverse order
		slices.Reverse(lines)
	}
	return []byte(strings.Join(lines, ""))
}

// TestParseAgreesWithReference: over many generated cache files of
// either format, as written and damaged or rearranged, ParseCacheFor
// answers what the check of every line answers (see agree), for users in
// the file, users not in it, and all users. Some damaged v2 files get a
// matching first line, as only a writer could give them.
func TestParseAgreesWithReference(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	var accepted, refused, unordered, sealed int
	for range 6000 {
		data := genCache(t, rng)
		for range rng.IntN(4) {
			data = mutate(rng, data)
		}
		if bytes.HasPrefix(data, []byte(HeaderV2)) && rng.IntN(3) == 0 {
			_, body, _ := bytes.Cut(data, []byte{'\n'})
			data = seal(body)
		}
		if bytes.HasPrefix(data, []byte(HeaderV2)) && checkSeal(data) == nil {
			sealed++
		}
		users := []string{"", "zed", genNames[rng.IntN(len(genNames))]}
		for line := range strings.Lines(string(data)) {
			if _, rest, ok := strings.Cut(line, " "); ok && len(users) < 8 {
				name, _, _ := strings.Cut(rest, " ")
				users = append(users, name)
			}
		}
		for _, u := range users {
			if agree(t, data, u) {
				accepted++
			} else {
				refused++
			}
		}
		if !usersOrdered(data) {
			unordered++
		}
	}
	t.Logf("%d answers accepted, %d refused; %d files not in order, %d v2 files that match their checksum", accepted, refused, unordered, sealed)
	if accepted < 1000 || refused < 1000 || unordered < 500 || sealed < 1000 {
		t.Errorf("the generator covers too little: %d accepted, %d refused, %d not in order, %d sealed", accepted, refused, unordered, sealed)
	}
}

// TestParseOrder: in a v1 file, users in increasing order are checked
// without a set of names, a duplicate next to itself is refused as one,
// and users in any other order (which no writer wrote) are still read,
// each case as the reference reads it.
func TestParseOrder(t *testing.T) {
	t.Parallel()
	valid := validCacheFileV1(t)
	alice := "user alice root,deploy\n"
	tests := []struct {
		name    string
		data    string
		ordered bool
		wantErr string // "" when accepted
	}{
		{"as Marshal writes it", valid, true, ""},
		{"adjacent duplicate", replaceLine(valid, alice, alice+alice), false, `user "alice" listed twice`},
		{"adjacent user and locked", replaceLine(valid, alice, alice+"locked alice -\n"), false, `user "alice" listed twice`},
		{"duplicate far apart", beforeEnd(valid, strings.TrimSuffix(alice, "\n")), false, `user "alice" listed twice`},
		{"duplicate of the first", beforeEnd(valid, "user _svc-1 root"), false, `user "_svc-1" listed twice`},
		{"two users swapped", strings.Replace(valid, alice+"locked bob root\n", "locked bob root\n"+alice, 1), false, ""},
		{"a prefix after its extension", beforeEnd(valid, "user alice.b root\nuser alice-b root"), false, ""},
		{"in order around revoked lines", beforeEnd(valid, "user dave root\nrevoked user 5 2030-01-01T00:00:00Z\nuser erin root"), true, ""},
		{"out of order with a bad login after", beforeEnd(valid, "user aaron Root"), false, `login "Root" of aaron is not valid`},
		{"out of order, then a duplicate", beforeEnd(valid, "user aaron root\nuser aaron root"), false, `user "aaron" listed twice`},
		{"in order, then a bad name", beforeEnd(valid, "user dave root\nuser eRin root"), true, `not "user NAME`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data := []byte(tt.data)
			if got := usersOrdered(data); got != tt.ordered {
				t.Fatalf("users in order: %v, the test case says %v:\n%s", got, tt.ordered, data)
			}
			for _, u := range []string{"", "alice", "aaron", "bob", "zed"} {
				if accepted := agree(t, data, u); accepted != (tt.wantErr == "") {
					t.Fatalf("ParseCacheFor(%q) accepted %v, want %v", u, accepted, tt.wantErr == "")
				}
			}
			if _, err := ParseCacheFor(data, "alice"); tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not mention %q", err, tt.wantErr)
			}
		})
	}
}

// orderSeeds are cache files whose users are not as Marshal writes
// them, for FuzzParseCache and its committed corpus.
func orderSeeds(t testing.TB) map[string]string {
	valid := validCacheFileV1(t)
	alice, bob := "user alice root,deploy\n", "locked bob root\n"
	if !strings.Contains(valid, alice+bob) {
		t.Fatalf("the example cache has no lines %q:\n%s", alice+bob, valid)
	}
	return map[string]string{
		"unordered":          strings.Replace(valid, alice+bob, bob+alice, 1),
		"adjacent-duplicate": strings.Replace(valid, alice, alice+alice, 1),
	}
}

// lookupSeed is a seed of FuzzLookup: the lines after the first of a v2
// file, the user asked for, and whether lookup answers and the full
// parse accepts.
type lookupSeed struct {
	body, user      string
	answered, valid bool
}

// lookupSeeds are FuzzLookup's committed seeds, each a case of
// TestLookupSealed's.
func lookupSeeds(t testing.TB) map[string]lookupSeed {
	_, valid, _ := strings.Cut(validCacheFileV1(t), "\n")
	alice, bob, carol := "user alice root,deploy\n", "locked bob root\n", "user carol.smith -\n"
	badCarol := strings.Replace(valid, carol, "user carol.smith Root\n", 1)
	return map[string]lookupSeed{
		"valid":           {valid, "alice", true, true},
		"absent":          {valid, "dave", true, true},
		"duplicate":       {strings.Replace(valid, alice, alice+alice, 1), "alice", false, false},
		"duplicate-other": {strings.Replace(valid, alice, alice+alice, 1), "carol.smith", true, false},
		"unordered":       {strings.Replace(valid, alice+bob, bob+alice, 1), "alice", true, false},
		"bad-elsewhere":   {badCarol, "_svc-1", true, false},
		"bad-neighbour":   {badCarol, "bob", false, false},
	}
}

// TestValidLogins: the one-pass check of a login list accepts exactly
// the lists whose every element validLogin accepts.
func TestValidLogins(t *testing.T) {
	t.Parallel()
	parts := append(append([]string{}, genLogins...), genBadLogins...)
	parts = append(parts, "_", "a-", "z9", strings.Repeat("a", 31), ",", "a,,b")
	check := func(s string) {
		want := true
		for l := range strings.SplitSeq(s, ",") {
			want = want && validLogin(l)
		}
		if got := validLogins([]byte(s)); got != want {
			t.Errorf("validLogins(%q) = %v, want %v", s, got, want)
		}
	}
	for _, a := range parts {
		check(a)
		for _, b := range parts {
			check(a + "," + b)
			check(a + b)
		}
	}
	for c := range 256 {
		check(string(rune(c)))
		check("a" + string([]byte{byte(c)}))
		check("root," + string([]byte{byte(c)}) + "x")
	}
}

// BenchmarkParseCacheFor is the parse teleport-authkeys does on every
// login, for one user of a cache of 10,000.
func BenchmarkParseCacheFor(b *testing.B) {
	c := exampleCache(b)
	c.Users = map[string]Access{}
	for i := range 10000 {
		c.Users[fmt.Sprintf("u%d", i)] = Access{Logins: []string{"root", "deploy"}}
	}
	data, err := c.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseCacheFor(data, "u5"); err != nil {
			b.Fatal(err)
		}
	}
	if bytes.Count(data, []byte("\n")) < 10000 {
		b.Fatal("the cache is too small")
	}
}

// TestParseV2Damaged: a v2 file that no longer matches its first line,
// whether cut short, changed in one byte, given the first line of
// another generation, or with a first line not as Marshal writes it, is
// refused whole, by lookup and the full parse alike, with the reason.
func TestParseV2Damaged(t *testing.T) {
	t.Parallel()
	valid := validCacheFile(t)
	head, body, _ := strings.Cut(valid, "\n")
	size, sum, ok := parseSeal([]byte(head))
	if !ok || size != len(body) {
		t.Fatalf("parseSeal(%q) = %d, %08x, %v", head, size, sum, ok)
	}
	withHead := func(format string, args ...any) string { return fmt.Sprintf(format, args...) + "\n" + body }
	next := exampleCache(t)
	next.Users["alice"] = Access{Logins: []string{"root", "deploy", "admin"}}
	nextFile, err := next.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	_, nextBody, _ := strings.Cut(string(nextFile), "\n")
	tests := []struct{ name, data, wantErr string }{
		{"size past the end", withHead("%s size=%d crc32=%08x", HeaderV2, size+1, sum), "truncated or damaged"},
		{"size short of the end", withHead("%s size=%d crc32=%08x", HeaderV2, size-1, sum), "truncated or damaged"},
		{"size zero", withHead("%s size=0 crc32=%08x", HeaderV2, sum), "truncated or damaged"},
		{"cut before end", strings.TrimSuffix(valid, "end\n"), "truncated or damaged"},
		{"cut in the first line", head[:len(head)-3], "truncated"},
		{"only the first line", head + "\n", "truncated or damaged"},
		{"a line added", replaceLine(valid, "end\n", "user zed root\nend\n"), "truncated or damaged"},
		{"a byte changed", strings.Replace(valid, "user alice root,deploy", "user alice root,deplox", 1), "damaged: the checksum"},
		{"two bytes swapped", strings.Replace(valid, "root,deploy", "deploy,root", 1), "damaged: the checksum"},
		{"first line of the previous generation", head + "\n" + nextBody[:len(body)], "damaged: the checksum"},
		{"first line of the next generation", strings.SplitAfter(string(nextFile), "\n")[0] + body, "truncated or damaged"},
		{"size with a leading zero", withHead("%s size=0%d crc32=%08x", HeaderV2, size, sum), "line 1"},
		{"size with a sign", withHead("%s size=+%d crc32=%08x", HeaderV2, size, sum), "line 1"},
		{"size too long", withHead("%s size=1234567890 crc32=%08x", HeaderV2, sum), "line 1"},
		{"checksum in capitals", withHead("%s size=%d crc32=%08X", HeaderV2, size, sum|0xa0000000), "line 1"},
		{"checksum short", withHead("%s size=%d crc32=%07x", HeaderV2, size, sum&0xfffffff), "line 1"},
		{"checksum missing", withHead("%s size=%d", HeaderV2, size), "line 1"},
		{"fields swapped", withHead("%s crc32=%08x size=%d", HeaderV2, sum, size), "line 1"},
		{"extra field", withHead("%s size=%d crc32=%08x users=4", HeaderV2, size, sum), "line 1"},
		{"trailing space", withHead("%s size=%d crc32=%08x ", HeaderV2, size, sum), "line 1"},
		{"two spaces", withHead("%s size=%d  crc32=%08x", HeaderV2, size, sum), "line 1"},
		{"header v3", withHead("teleport-node policy v3 size=%d crc32=%08x", size, sum), "line 1"},
		{"CR LF", strings.ReplaceAll(valid, "\n", "\r\n"), "line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.data == valid {
				t.Fatal("the test case did not change the valid file")
			}
			for _, user := range []string{"", "alice", "bob", "zed"} {
				agree(t, []byte(tt.data), user)
				c, err := ParseCacheFor([]byte(tt.data), user)
				if err == nil || c != nil {
					t.Fatalf("ParseCacheFor(%q) accepted it (err %v):\n%s", user, err, tt.data)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("ParseCacheFor(%q) error %q does not mention %q", user, err, tt.wantErr)
				}
			}
		})
	}
}

// TestLookupSealed: v2 files whose first line matches lines that are not
// as Marshal writes them, as only a writer could make. The full parse
// refuses each; lookup refuses when the bad line is one it reads (the
// header and revoked lines, the user's line and those either side, the
// lines the binary search meets) and otherwise answers from the lines it
// checked. The checksum guards against damage, not against a writer.
func TestLookupSealed(t *testing.T) {
	t.Parallel()
	valid := validCacheFileV1(t)
	alice, bob, carol := "user alice root,deploy\n", "locked bob root\n", "user carol.smith -\n"
	badCarol := strings.Replace(valid, carol, "user carol.smith Root\n", 1)
	// 21 lines of the same length: the binary search starts at u20's.
	var many strings.Builder
	for i := 10; i <= 30; i++ {
		fmt.Fprintf(&many, "user u%d root\n", i)
	}
	users := "user _svc-1 _svc,www-data\n" + alice + bob + carol
	if !strings.Contains(valid, users) {
		t.Fatalf("the example cache has no lines %q", users)
	}
	badMiddle := strings.Replace(valid, users, strings.Replace(many.String(), "user u20", "user U20", 1), 1)
	tests := []struct {
		name, v1file, user string
		wantErr            string // lookup's refusal; "" when it answers
		wantFullErr        string
	}{
		{"duplicate, its user", strings.Replace(valid, alice, alice+alice, 1), "alice", `user "alice" listed twice`, `user "alice" listed twice`},
		{"duplicate locked, its user", strings.Replace(valid, alice, alice+"locked alice -\n", 1), "alice", `user "alice" listed twice`, `user "alice" listed twice`},
		{"duplicate, the next user", strings.Replace(valid, alice, alice+alice, 1), "bob", "", `listed twice`},
		{"duplicate, another user", strings.Replace(valid, alice, alice+alice, 1), "carol.smith", "", `listed twice`},
		{"out of order, its user", strings.Replace(valid, alice+bob, bob+alice, 1), "bob", "", "out of order"}, // bob not found: denied
		{"out of order, a user it hides", strings.Replace(valid, alice+bob, bob+alice, 1), "alice", "", "out of order"},
		{"bad login, its user", badCarol, "carol.smith", `login "Root"`, `login "Root"`},
		{"bad login, the user before", badCarol, "bob", `login "Root"`, `login "Root"`},
		{"bad login, a user after", badCarol, "zed", `login "Root"`, `login "Root"`},
		{"bad login elsewhere", badCarol, "_svc-1", "", `login "Root"`},
		{"bad name elsewhere", strings.Replace(valid, carol, "user Carol -\n", 1), "_svc-1", "", "not \"user NAME"},
		{"bad name where the search looks", badMiddle, "u11", `user line "U20 root"`, `user line "U20 root"`},
		{"revoked among the users", strings.Replace(valid, carol, "revoked user 5 2030-01-01T00:00:00Z\n"+carol, 1), "carol.smith", `"revoked" line among the user lines`, "user line after the revoked lines"},
		{"bad revoked line", replaceLine(valid, "revoked session", "revoked session 0 2030-01-01T00:00:00Z\n"), "alice", "positive decimal", "positive decimal"},
		{"header lines out of order", moveLine(valid, "mode ", "user "), "alice", `"ca" where format v2 has the "mode" line`, "out of order"},
		{"bad mode", replaceLine(valid, "mode ", "mode recording\n"), "alice", "mode", "mode"},
		{"line after end", valid + "user zed root\n", "alice", "truncated", "text after the end line"},
		{"unknown line among users", strings.Replace(valid, carol, "group wheel 10\n"+carol, 1), "carol.smith", `"group" line among the user lines`, "unknown keyword"},
		{"unknown line elsewhere", strings.Replace(valid, carol, carol+"group wheel 10\n", 1), "_svc-1", "", "unknown keyword"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data := []byte(resealV2(tt.v1file))
			if checkSeal(data) != nil {
				t.Fatal("not sealed")
			}
			_, fullErr := ParseCache(data)
			if fullErr == nil || !strings.Contains(fullErr.Error(), tt.wantFullErr) {
				t.Errorf("ParseCache error %v, want one mentioning %q", fullErr, tt.wantFullErr)
			}
			c, err := ParseCacheFor(data, tt.user)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("ParseCacheFor(%q) refused: %v", tt.user, err)
			case tt.wantErr != "" && (err == nil || c != nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("ParseCacheFor(%q) = %+v, %v; want an error mentioning %q", tt.user, c, err, tt.wantErr)
			}
			agree(t, data, tt.user)
		})
	}
}

// moveLine returns file with its line that starts with prefix moved
// before the first line that starts with before.
func moveLine(file, prefix, before string) string {
	var line string
	for l := range strings.Lines(file) {
		if strings.HasPrefix(l, prefix) {
			line = l
			break
		}
	}
	file = strings.Replace(file, line, "", 1)
	return replaceLine(file, before, line+before)
}

// TestLookupEveryUser: in v2 files of 0 to 300 users, lookup answers for
// every user, and for every name just before or after one, what the full
// parse answers: at both ends, between neighbours, and where a name is a
// prefix of the next.
func TestLookupEveryUser(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, 2, 3, 7, 64, 300} {
		c := exampleCache(t)
		c.Users = map[string]Access{}
		for i := range n {
			name := fmt.Sprintf("u%d", i*7)
			if i%5 == 0 {
				name += ".x"
			}
			c.Users[name] = Access{Logins: []string{"root", fmt.Sprintf("l%d", i)}, Locked: i%3 == 0}
		}
		data, err := c.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		asked := []string{"", "a", "zzz", "u", "_"}
		for name := range c.Users {
			asked = append(asked, name, name+"-", name+".", name+"0", name[:len(name)-1])
		}
		for _, u := range asked {
			if !agree(t, data, u) {
				t.Fatalf("ParseCacheFor(%q) refused a valid file", u)
			}
			got, _ := ParseCacheFor(data, u)
			if a, ok := c.Users[u]; u != "" && (ok != (len(got.Users) == 1) || ok && !slices.Equal(got.Users[u].Logins, a.Logins)) {
				t.Fatalf("%d users: ParseCacheFor(%q) users %+v, want %+v", n, u, got.Users, a)
			}
		}
	}
}
