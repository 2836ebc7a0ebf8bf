package nss

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/opensshca/suite/internal/testbin"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run go test -update if the change is intended):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// fixture is the input of the golden files: unsorted, with defaults, a
// repeated member and a group without members.
func fixture() ([]User, []Group) {
	users := []User{
		{Name: "carol", UID: 200125, GID: 200125},
		{Name: "alice", UID: 200123, GID: 200123, Gecos: "Alice Example"},
		{Name: "bob_ops", UID: 200124, GID: 200124, Gecos: "Bøb Öps", Home: "/srv/home/bob_ops", Shell: "/usr/bin/zsh"},
	}
	groups := []Group{
		{Name: "ops", GID: 200500, Members: []string{"carol", "alice"}},
		{Name: "docker", GID: 998, Members: []string{"bob_ops", "alice", "bob_ops"}},
		{Name: "_auditors", GID: 200501},
	}
	return users, groups
}

func TestFilesGolden(t *testing.T) {
	t.Parallel()
	users, groups := fixture()
	passwd, group, err := Files(users, groups)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "passwd.golden", passwd)
	golden(t, "group.golden", group)

	// The same entries in another order render the same bytes.
	slices.Reverse(users)
	slices.Reverse(groups)
	slices.Reverse(groups[2].Members)
	passwd2, group2, err := Files(users, groups)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(passwd, passwd2) || !bytes.Equal(group, group2) {
		t.Errorf("output depends on input order:\n%s%s---\n%s%s", passwd, group, passwd2, group2)
	}
	// Sorting the members did not sort the caller's slice.
	if m := groups[1].Members; !slices.Equal(m, []string{"bob_ops", "alice", "bob_ops"}) {
		t.Errorf("Files changed the caller's members: %q", m)
	}
}

func TestFilesEmpty(t *testing.T) {
	t.Parallel()
	passwd, group, err := Files(nil, nil)
	if err != nil || len(passwd) != 0 || len(group) != 0 {
		t.Errorf("Files(nil, nil) = %q, %q, %v; want empty files", passwd, group, err)
	}
}

var alice = User{Name: "alice", UID: 200123, GID: 200123}

// refusals are inputs Files must refuse, most of them attempts to forge a
// line. name is the entry the error must name.
var refusals = []struct {
	test    string
	users   []User
	groups  []Group
	kind    string
	name    string
	wantErr error
}{
	{"colon in name", []User{{Name: "eve:x:0:0", UID: 1001, GID: 1001}}, nil, "user", "eve:x:0:0", ErrInvalidName},
	{"newline in name", []User{{Name: "eve\nroot", UID: 1001, GID: 1001}}, nil, "user", "eve\nroot", ErrInvalidName},
	{"trailing newline in name", []User{{Name: "eve\n", UID: 1001, GID: 1001}}, nil, "user", "eve\n", ErrInvalidName},
	{"upper case name", []User{{Name: "Eve", UID: 1001, GID: 1001}}, nil, "user", "Eve", ErrInvalidName},
	{"digit first", []User{{Name: "1eve", UID: 1001, GID: 1001}}, nil, "user", "1eve", ErrInvalidName},
	{"empty name", []User{{UID: 1001, GID: 1001}}, nil, "user", "", ErrInvalidName},
	{"33 characters", []User{{Name: strings.Repeat("e", 33), UID: 1001, GID: 1001}}, nil, "user", strings.Repeat("e", 33), ErrInvalidName},
	{"newline in gecos", []User{{Name: "eve", UID: 1001, GID: 1001, Gecos: "Eve\nroot::0:0::/:/bin/sh"}}, nil, "user", "eve", ErrInvalidField},
	{"colon in gecos", []User{{Name: "eve", UID: 1001, GID: 1001, Gecos: "Eve:/root"}}, nil, "user", "eve", ErrInvalidField},
	{"comma in gecos", []User{{Name: "eve", UID: 1001, GID: 1001, Gecos: "Eve,Room 1"}}, nil, "user", "eve", ErrInvalidField},
	{"control in gecos", []User{{Name: "eve", UID: 1001, GID: 1001, Gecos: "Eve\x1b[2J"}}, nil, "user", "eve", ErrInvalidField},
	{"invalid UTF-8 in gecos", []User{{Name: "eve", UID: 1001, GID: 1001, Gecos: "Eve\xff"}}, nil, "user", "eve", ErrInvalidField},
	{"trailing space in gecos", []User{{Name: "eve", UID: 1001, GID: 1001, Gecos: "Eve "}}, nil, "user", "eve", ErrInvalidField},
	{"relative home", []User{{Name: "eve", UID: 1001, GID: 1001, Home: "home/eve"}}, nil, "user", "eve", ErrInvalidField},
	{"unclean home", []User{{Name: "eve", UID: 1001, GID: 1001, Home: "/home/eve/../../root"}}, nil, "user", "eve", ErrInvalidField},
	{"trailing slash in home", []User{{Name: "eve", UID: 1001, GID: 1001, Home: "/home/eve/"}}, nil, "user", "eve", ErrInvalidField},
	{"colon in home", []User{{Name: "eve", UID: 1001, GID: 1001, Home: "/home/eve:/bin/sh"}}, nil, "user", "eve", ErrInvalidField},
	{"newline in shell", []User{{Name: "eve", UID: 1001, GID: 1001, Shell: "/bin/sh\nroot::0:0::/:/bin/sh"}}, nil, "user", "eve", ErrInvalidField},
	{"relative shell", []User{{Name: "eve", UID: 1001, GID: 1001, Shell: "bash"}}, nil, "user", "eve", ErrInvalidField},
	{"uid 0", []User{{Name: "eve", UID: 0, GID: 1001}}, nil, "user", "eve", ErrReservedID},
	{"gid 0", []User{{Name: "eve", UID: 1001, GID: 0}}, nil, "user", "eve", ErrReservedID},
	{"uid below MinID", []User{{Name: "eve", UID: MinID - 1, GID: 1001}}, nil, "user", "eve", ErrReservedID},
	{"uid 65535", []User{{Name: "eve", UID: 65535, GID: 1001}}, nil, "user", "eve", ErrReservedID},
	{"uid -1", []User{{Name: "eve", UID: 1<<32 - 1, GID: 1001}}, nil, "user", "eve", ErrReservedID},
	{"duplicate uid", []User{alice, {Name: "eve", UID: alice.UID, GID: 1001}}, nil, "user", "eve", ErrDuplicate},
	{"duplicate user", []User{alice, {Name: "alice", UID: 1001, GID: 1001}}, nil, "user", "alice", ErrDuplicate},
	{"duplicate private gid", []User{alice, {Name: "eve", UID: 1001, GID: alice.GID}}, nil, "user", "eve", ErrDuplicate},
	{"group named like a user", []User{alice}, []Group{{Name: "alice", GID: 1001}}, "group", "alice", ErrDuplicate},
	{"group with a private gid", []User{alice}, []Group{{Name: "ops", GID: alice.GID}}, "group", "ops", ErrDuplicate},
	{"duplicate group", nil, []Group{{Name: "ops", GID: 2000}, {Name: "ops", GID: 2001}}, "group", "ops", ErrDuplicate},
	{"duplicate group gid", nil, []Group{{Name: "ops", GID: 2000}, {Name: "dev", GID: 2000}}, "group", "dev", ErrDuplicate},
	{"group gid 0", nil, []Group{{Name: "wheel", GID: 0}}, "group", "wheel", ErrReservedID},
	{"Debian's sudo gid", []User{alice}, []Group{{Name: "sudo", GID: 27, Members: []string{"alice"}}}, "group", "sudo", ErrReservedID},
	{"colon in group", nil, []Group{{Name: "ops:x:2000:eve", GID: 2000}}, "group", "ops:x:2000:eve", ErrInvalidName},
	{"comma in member", []User{alice}, []Group{{Name: "ops", GID: 2000, Members: []string{"alice,eve"}}}, "group", "ops", ErrInvalidName},
	{"newline in member", []User{alice}, []Group{{Name: "ops", GID: 2000, Members: []string{"alice\nroot:x:0:"}}}, "group", "ops", ErrInvalidName},
	{"empty member", nil, []Group{{Name: "ops", GID: 2000, Members: []string{""}}}, "group", "ops", ErrInvalidName},
}

func TestFilesRefuses(t *testing.T) {
	t.Parallel()
	for _, tt := range refusals {
		t.Run(tt.test, func(t *testing.T) {
			t.Parallel()
			passwd, group, err := Files(tt.users, tt.groups)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Files = %q, %q, %v; want %v", passwd, group, err, tt.wantErr)
			}
			var ee *EntryError
			if !errors.As(err, &ee) || ee.Kind != tt.kind || ee.Name != tt.name {
				t.Errorf("error %v does not name %s %q", err, tt.kind, tt.name)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error message has a raw newline: %q", err)
			}
		})
	}
}

// TestWriteRefuses checks that a refused input leaves the files in place:
// same contents, same inode.
func TestWriteRefuses(t *testing.T) {
	t.Parallel()
	for _, tt := range refusals {
		t.Run(tt.test, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			users, groups := fixture()
			if _, err := Write(dir, users, groups); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, dir)
			changed, err := Write(dir, tt.users, tt.groups)
			if !errors.Is(err, tt.wantErr) || changed {
				t.Fatalf("Write = %v, %v; want false, %v", changed, err, tt.wantErr)
			}
			if after := snapshot(t, dir); !slices.Equal(after, before) {
				t.Errorf("files changed:\n%q\nwant\n%q", after, before)
			}
		})
	}
}

// snapshot describes every entry of dir: name, inode, mode and contents.
func snapshot(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		ino := fi.Sys().(*syscall.Stat_t).Ino
		s = append(s, e.Name()+" "+strconv.FormatUint(ino, 10)+" "+fi.Mode().String()+" "+string(data))
	}
	return s
}

func TestWrite(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	users, groups := fixture()
	write := func(wantChanged bool) {
		t.Helper()
		changed, err := Write(dir, users, groups)
		if err != nil {
			t.Fatal(err)
		}
		if changed != wantChanged {
			t.Errorf("Write reported changed = %v, want %v", changed, wantChanged)
		}
		checkWritten(t, dir, users, groups)
	}

	write(true)
	before := snapshot(t, dir)
	write(false)
	if after := snapshot(t, dir); !slices.Equal(after, before) {
		t.Errorf("unchanged files were rewritten:\n%q\nwant\n%q", after, before)
	}

	// A wrong mode is repaired.
	if err := os.Chmod(filepath.Join(dir, "passwd"), 0o600); err != nil {
		t.Fatal(err)
	}
	write(true)

	users = append(users, User{Name: "dave", UID: 200126, GID: 200126})
	write(true)
	users = users[:1]
	write(true)
	if got := snapshot(t, dir); len(got) != 2 {
		t.Errorf("Write left other files in %s: %q", dir, got)
	}
}

// checkWritten checks that dir holds the files of users and groups, mode
// 0644.
func checkWritten(t *testing.T, dir string, users []User, groups []Group) {
	t.Helper()
	passwd, group, err := Files(users, groups)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]byte{"passwd": passwd, "group": group} {
		path := filepath.Join(dir, name)
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != 0o644 {
			t.Errorf("%s has mode %v, want 0644", name, fi.Mode())
		}
	}
}

// TestWriteGroupFirst makes the passwd file impossible to replace and
// checks that the group file was already written.
func TestWriteGroupFirst(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "passwd"), 0o755); err != nil {
		t.Fatal(err)
	}
	users, groups := fixture()
	changed, err := Write(dir, users, groups)
	if err == nil || !changed {
		t.Fatalf("Write = %v, %v; want true and an error", changed, err)
	}
	_, want, _ := Files(users, groups)
	got, err := os.ReadFile(filepath.Join(dir, "group"))
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("group file = %q, %v; want it written before passwd", got, err)
	}
}

func TestWriteMissingDir(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "missing")
	if _, err := Write(dir, []User{alice}, nil); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Write to a missing directory: %v, want fs.ErrNotExist", err)
	}
}

// localPasswd and localGroup have comments, blank lines and the malformed
// lines glibc's files module skips.
const (
	localPasswd = `# /etc/passwd
root:x:0:0:root:/root:/bin/bash

  # an indented comment
	daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
Mixed.Case:x:1000:1000:Local User,,,:/home/mc:/bin/bash
nofields
uidword:x:root:0::/:/bin/sh
gidmissing:x:5
negative:x:-1:5::/:/bin/sh
overflow:x:4294967296:5::/:/bin/sh
:x:7:7:no name:/:/bin/sh
+nisuser::::::
-nisexcluded::::::
+
short:x:1001:1001
noeol:x:1002:1002::/home/noeol:/bin/sh`
	localGroup = `root:x:0:
# comment:x:5:
sudo:x:27:admin
sudo:x:28:
 adm:x:4:syslog,admin

big:x:4294967295:` + "%s" + `
nogid:x::
word:x:staff:
overflow:x:4294967296:
+:::
-wheel
onlyname
noeol:x:1002:`
)

func TestLocalUsers(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "passwd")
	if err := os.WriteFile(path, []byte(localPasswd), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := LocalUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"Mixed.Case", "daemon", "noeol", "root", "short"}
	if names := slices.Sorted(maps.Keys(got)); !slices.Equal(names, want) {
		t.Errorf("LocalUsers = %q, want %q", names, want)
	}
	if _, err := LocalUsers(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LocalUsers of a missing file: %v, want fs.ErrNotExist", err)
	}
}

func TestLocalGroups(t *testing.T) {
	t.Parallel()
	// A member list longer than bufio.Scanner's default line limit.
	members := strings.Repeat("member,", 20000) + "last"
	path := filepath.Join(t.TempDir(), "group")
	if err := os.WriteFile(path, []byte(strings.Replace(localGroup, "%s", members, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := LocalGroups(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint32{"root": 0, "sudo": 27, "adm": 4, "big": 1<<32 - 1, "noeol": 1002}
	if !maps.Equal(got, want) {
		t.Errorf("LocalGroups = %v, want %v", got, want)
	}
	if _, err := LocalGroups(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LocalGroups of a missing file: %v, want fs.ErrNotExist", err)
	}
}

// TestLocalReadsFiles reads back what Files renders: every user and group
// is found, with its GID.
func TestLocalReadsFiles(t *testing.T) {
	t.Parallel()
	users, groups := fixture()
	passwd, group, err := Files(users, groups)
	if err != nil {
		t.Fatal(err)
	}
	gotUsers, gotGroups := parseUsers(passwd), parseGroups(group)
	for _, u := range users {
		if !gotUsers[u.Name] || gotGroups[u.Name] != u.GID {
			t.Errorf("user %s: found %v, private gid %d; want true, %d", u.Name, gotUsers[u.Name], gotGroups[u.Name], u.GID)
		}
	}
	for _, g := range groups {
		if gid, ok := gotGroups[g.Name]; !ok || gid != g.GID {
			t.Errorf("group %s: gid %d, %v; want %d", g.Name, gid, ok, g.GID)
		}
	}
}

// TestExtrausers writes the files and looks alice up through glibc and the
// real libnss-extrausers: in a private mount namespace, the files are bound
// over /var/lib/extrausers and a test nsswitch.conf over
// /etc/nsswitch.conf. The machine's own files are never written.
//
// alice gets the machine's sudo group if its GID is at least MinID, or a
// sudo group of the test if there is none. Debian's sudo has GID 27, which
// libnss-extrausers ignores; then alice gets a cluster group instead, and
// the test checks that the module does ignore a raw sudo line, the reason
// Files refuses it.
func TestExtrausers(t *testing.T) {
	testbin.SkipUnlessExtrausers(t)
	local, err := LocalUsers("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	if local["alice"] {
		t.Skip("skipping: /etc/passwd already has an alice, who would win over the cluster's")
	}
	localGroups, err := LocalGroups("/etc/group")
	if err != nil {
		t.Fatal(err)
	}
	user := User{Name: "alice", UID: 200123, GID: 200123, Gecos: "Alice Example"}
	supp := Group{Name: "sudo", GID: 200999, Members: []string{"alice"}}
	sudoGID, hasSudo := localGroups["sudo"]
	lowSudo := hasSudo && sudoGID < MinID
	switch {
	case lowSudo:
		t.Logf("the machine's sudo group has GID %d, below %d: checking a cluster group instead", sudoGID, MinID)
		supp.Name = "cluster-admins"
	case hasSudo:
		supp.GID = sudoGID // the machine's group, as the node gives it
	}

	testbin.MakeMountpoint(t, DefaultDir)
	realConf, err := os.ReadFile("/etc/nsswitch.conf")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := Write(dir, []User{user}, []Group{supp}); err != nil {
		t.Fatal(err)
	}
	line, groups := testbin.NSSLookup(t, dir, "alice")
	wantLine := "alice:*:200123:200123:Alice Example:/home/alice:/bin/bash"
	if f := strings.Split(line, ":"); line != wantLine || len(f) != 7 || f[2] != "200123" {
		t.Errorf("getent passwd alice = %q, want %q", line, wantLine)
	}
	if !slices.Contains(groups, "alice") || !slices.Contains(groups, supp.Name) {
		t.Errorf("id -Gn alice = %q, want alice and %s (GID %d)", groups, supp.Name, supp.GID)
	}

	if lowSudo {
		// Bypass Files: libnss-extrausers skips the line.
		raw := t.TempDir()
		passwd, _, err := Files([]User{user}, nil)
		if err != nil {
			t.Fatal(err)
		}
		group := fmt.Appendf(nil, "alice:x:200123:\nsudo:x:%d:alice\n", sudoGID)
		for name, data := range map[string][]byte{"passwd": passwd, "group": group} {
			if err := os.WriteFile(filepath.Join(raw, name), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if _, groups := testbin.NSSLookup(t, raw, "alice"); slices.Contains(groups, "sudo") {
			t.Errorf("libnss-extrausers gave alice the group sudo (GID %d, below MinID): id -Gn alice = %q; MinID may be lowered", sudoGID, groups)
		}
	}

	if after, err := os.ReadFile("/etc/nsswitch.conf"); err != nil || !bytes.Equal(after, realConf) {
		t.Errorf("/etc/nsswitch.conf changed outside the namespace: %v", err)
	}
}

// FuzzFiles checks that whatever Files accepts renders exactly the lines it
// was given, and that LocalUsers and LocalGroups read them back: no field
// can add a line or a field.
func FuzzFiles(f *testing.F) {
	users, _ := fixture()
	for _, u := range users {
		f.Add(u.Name, u.UID, u.GID, u.Gecos, u.Home, u.Shell, "alice")
	}
	for _, tt := range refusals {
		for _, u := range tt.users {
			f.Add(u.Name, u.UID, u.GID, u.Gecos, u.Home, u.Shell, "alice")
		}
		for _, g := range tt.groups {
			for _, m := range g.Members {
				f.Add("bob", uint32(1001), uint32(1001), "", "", "", m)
			}
		}
	}
	f.Fuzz(func(t *testing.T, name string, uid, gid uint32, gecos, home, shell, member string) {
		u := User{Name: name, UID: uid, GID: gid, Gecos: gecos, Home: home, Shell: shell}
		ops := Group{Name: "ops", GID: 2000, Members: []string{member, name}}
		passwd, group, err := Files([]User{u}, []Group{ops})
		if err != nil {
			var ee *EntryError
			if !errors.As(err, &ee) {
				t.Fatalf("error %v is not an *EntryError", err)
			}
			return
		}
		u = u.withDefaults()
		wantPasswd := []string{u.Name, "*", strconv.Itoa(int(uid)), strconv.Itoa(int(gid)), u.Gecos, u.Home, u.Shell}
		if got := strings.Split(strings.TrimSuffix(string(passwd), "\n"), ":"); !slices.Equal(got, wantPasswd) {
			t.Errorf("passwd %q, want fields %q", passwd, wantPasswd)
		}
		if lines := bytes.Count(group, []byte("\n")); lines != 2 {
			t.Errorf("group has %d lines, want 2: %q", lines, group)
		}
		if got := parseUsers(passwd); len(got) != 1 || !got[name] {
			t.Errorf("parseUsers(%q) = %v", passwd, got)
		}
		want := map[string]uint32{name: gid, "ops": 2000}
		if got := parseGroups(group); !maps.Equal(got, want) {
			t.Errorf("parseGroups(%q) = %v, want %v", group, got, want)
		}
	})
}

// FuzzLocal checks that the parsers of the machine's files return only
// names that a line could hold.
func FuzzLocal(f *testing.F) {
	f.Add([]byte(localPasswd))
	f.Add([]byte(localGroup))
	f.Fuzz(func(t *testing.T, data []byte) {
		names := slices.Collect(maps.Keys(parseUsers(data)))
		names = slices.AppendSeq(names, maps.Keys(parseGroups(data)))
		for _, n := range names {
			if n == "" || strings.ContainsAny(n, ":\n") || strings.ContainsRune("#+- \t", rune(n[0])) {
				t.Errorf("parsed name %q from %q", n, data)
			}
		}
	})
}
