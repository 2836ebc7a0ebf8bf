package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPAMGroupBlock(t *testing.T) {
	const admin = "# admin's own lines\nsshd;*;bob;Al0000-2400;audio\n"
	grants := map[string][]string{"dave": {"sudo", "adm", "sudo"}, "alice": {"sudo"}}
	want := pamBlockBegin + "\nsshd;*;alice;Al0000-2400;sudo\nsshd;*;dave;Al0000-2400;adm,sudo\n" + pamBlockEnd + "\n"
	for _, c := range []struct {
		name, conf, want string
		grants           map[string][]string
		wantErr          bool
	}{
		{"appended to the admin's lines", admin, admin + want, grants, false},
		{"appended after a line without newline", "x", "x\n" + want, grants, false},
		{"replaced in place", "a\n" + pamBlockBegin + "\nold\n" + pamBlockEnd + "\nb\n", "a\n" + want + "b\n", grants, false},
		{"removed when empty", "a\n" + pamBlockBegin + "\nold\n" + pamBlockEnd + "\nb\n", "a\nb\n", nil, false},
		{"nothing to do", admin, admin, nil, false},
		{"begin without end", "a\n" + pamBlockBegin + "\nold\n", "", grants, true},
		{"end without begin", "a\n" + pamBlockEnd + "\n", "", grants, true},
		{"two blocks", pamBlockBegin + "\n" + pamBlockEnd + "\n" + pamBlockBegin + "\n" + pamBlockEnd + "\n", "", grants, true},
		{"name that could inject a line", "", "", map[string][]string{"dave;*": {"sudo"}}, true},
		{"group that could inject a line", "", "", map[string][]string{"dave": {"sudo\nsshd;*;*;Al0000-2400;root"}}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			block, err := pamGroupBlock(c.grants)
			if err == nil {
				var out []byte
				out, err = replacePAMBlock([]byte(c.conf), block)
				if err == nil && string(out) != c.want {
					t.Fatalf("got\n%s\nwant\n%s", out, c.want)
				}
			}
			if (err != nil) != c.wantErr {
				t.Fatalf("err %v, want error %v", err, c.wantErr)
			}
		})
	}
}

func TestWritePAMGroupConf(t *testing.T) {
	path := filepath.Join(t.TempDir(), "group.conf")
	if changed, err := writePAMGroupConf(path, nil); err != nil || changed {
		t.Fatalf("nothing to grant and no file: changed %v, %v", changed, err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("a file was created with nothing to grant")
	}
	if err := os.WriteFile(path, []byte("# stock\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if changed, err := writePAMGroupConf(path, map[string][]string{"dave": {"sudo"}}); err != nil || !changed {
		t.Fatalf("grant: changed %v, %v", changed, err)
	}
	if changed, err := writePAMGroupConf(path, map[string][]string{"dave": {"sudo"}}); err != nil || changed {
		t.Fatalf("same grant again: changed %v, %v", changed, err)
	}
	b, _ := os.ReadFile(path)
	fi, _ := os.Stat(path)
	if !strings.HasPrefix(string(b), "# stock\n") || !strings.Contains(string(b), "sshd;*;dave;Al0000-2400;sudo\n") || fi.Mode().Perm() != 0o640 {
		t.Fatalf("file %o:\n%s", fi.Mode().Perm(), b)
	}
	if _, err := writePAMGroupConf(path, nil); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "# stock\n" {
		t.Fatalf("after the last grant went: %q", b)
	}
}
