package packaging

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/buildinfo"
	"debug/elf"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Modes as dpkg-deb --contents and rpm print them.
const (
	exe  = "-rwxr-xr-x"
	data = "-rw-r--r--"
	dir  = "drwxr-xr-x"
)

const (
	maintainer = "OpenSSH CA suite team <team@opensshca.invalid>"
	homepage   = "https://github.com/opensshca/suite"
	license    = "LicenseRef-not-yet-licensed"
	// libc6 is the glibc the binaries need (cgo): TestBinaries checks the
	// symbol versions they import against it.
	libc6 = "libc6 (>= 2.34)"
)

// pkg is what one package must hold.
type pkg struct {
	name       string
	files      map[string]string // every regular file → its mode
	debFiles   map[string]string // more files in the .deb only
	static     []string          // programs linked statically (no libc)
	conffiles  []string
	depends    string // the .deb's Depends
	recommends string
	rpmReqs    []string          // what the .rpm requires
	scripts    map[string]string // .deb maintainer script → file in scripts/
	rpmScripts []string          // rpm --scripts headings
	user       string            // system user the postinst creates
	units      []string          // systemd units
}

// docs returns the files of /usr/share/doc/NAME: those of every package
// and the given others.
func docs(name string, others ...string) map[string]string {
	m := map[string]string{}
	for _, f := range append([]string{"copyright", "changelog.gz", "README.md"}, others...) {
		m["/usr/share/doc/"+name+"/"+f] = data
	}
	return m
}

func with(m map[string]string, more map[string]string) map[string]string {
	for k, v := range more {
		m[k] = v
	}
	return m
}

var serviceScripts = []string{"postinstall scriptlet", "preuninstall scriptlet", "postuninstall scriptlet"}

var packages = []pkg{
	{
		name: "teleport-ca",
		files: with(docs("teleport-ca", "teleport-ca.md", "caadm.md", "SECURITY.md", "api.md"), map[string]string{
			"/usr/bin/teleport-ca":                             exe,
			"/usr/bin/caadm":                                   exe,
			"/usr/lib/systemd/system/teleport-ca.service":      data,
			"/usr/lib/sysusers.d/teleport-ca.conf":             data,
			"/etc/teleport-ca/teleport-ca.toml":                data,
			"/usr/share/doc/teleport-ca/prometheus/alerts.yml": data,
			"/usr/share/man/man8/teleport-ca.8.gz":             data,
			"/usr/share/man/man8/caadm.8.gz":                   data,
		}),
		conffiles:  []string{"/etc/teleport-ca/teleport-ca.toml"},
		depends:    libc6,
		scripts:    map[string]string{"postinst": "teleport-ca.postinst", "prerm": "teleport-ca.prerm.deb", "postrm": "daemon-reload.postrm"},
		rpmScripts: serviceScripts,
		user:       "teleport-ca",
		units:      []string{"/usr/lib/systemd/system/teleport-ca.service"},
	},
	{
		name: "teleport-proxy",
		files: with(docs("teleport-proxy", "proxy.md"), map[string]string{
			"/usr/bin/teleport-proxy":                        exe,
			"/usr/lib/systemd/system/teleport-proxy.service": data,
			"/usr/lib/sysusers.d/teleport-proxy.conf":        data,
			"/etc/teleport-proxy/teleport-proxy.toml":        data,
			"/usr/share/man/man8/teleport-proxy.8.gz":        data,
		}),
		conffiles:  []string{"/etc/teleport-proxy/teleport-proxy.toml"},
		depends:    libc6,
		scripts:    map[string]string{"postinst": "teleport-proxy.postinst", "prerm": "teleport-proxy.prerm.deb", "postrm": "daemon-reload.postrm"},
		rpmScripts: serviceScripts,
		user:       "teleport-proxy",
		units:      []string{"/usr/lib/systemd/system/teleport-proxy.service"},
	},
	{
		name: "teleport-node",
		files: with(docs("teleport-node", "node.md",
			"examples/sshd/50-teleport-node.conf",
			"examples/sshd/50-teleport-node-keys-command.conf.example",
			"examples/nss/nsswitch.conf.example",
			"examples/pam/README.md",
			"examples/sudoers/teleport-cluster-sudo",
		), map[string]string{
			"/usr/bin/teleport-node":                        exe,
			"/usr/libexec/teleport-authkeys":                exe,
			"/usr/lib/systemd/system/teleport-node.service": data,
			"/usr/lib/sysusers.d/teleport-node.conf":        data,
			"/etc/default/teleport-node":                    data,
			"/usr/share/man/man8/teleport-node.8.gz":        data,
			"/usr/share/man/man8/teleport-authkeys.8.gz":    data,
		}),
		// sshd execs teleport-authkeys on every login: a static build
		// starts about 1 ms sooner; lintian's statically-linked-binary
		// error is overridden for it, with that reason.
		debFiles:   map[string]string{"/usr/share/lintian/overrides/teleport-node": data},
		static:     []string{"/usr/libexec/teleport-authkeys"},
		conffiles:  []string{"/etc/default/teleport-node"},
		depends:    libc6 + ", openssh-server",
		recommends: "libnss-extrausers",
		rpmReqs:    []string{"openssh-server"},
		scripts:    map[string]string{"postinst": "teleport-node.postinst", "prerm": "teleport-node.prerm.deb", "postrm": "daemon-reload.postrm"},
		rpmScripts: serviceScripts,
		user:       "teleport-authkeys", // node.DefaultAuthkeysUser
		units:      []string{"/usr/lib/systemd/system/teleport-node.service"},
	},
	{
		name: "teleport-keyhelper",
		files: with(docs("teleport-keyhelper", "keyhelper.md"), map[string]string{
			"/usr/bin/teleport-keyhelper":                      exe,
			"/usr/lib/systemd/user/teleport-keyhelper.service": data,
			"/usr/share/man/man1/teleport-keyhelper.1.gz":      data,
		}),
		depends: libc6 + ", openssh-client",
		rpmReqs: []string{"openssh-client"},
		units:   []string{"/usr/lib/systemd/user/teleport-keyhelper.service"},
	},
}

// built holds the packages, made once per test process by [dist].
var built struct {
	once    sync.Once
	dir     string // DIST; x/NAME: the .deb unpacked; control/NAME: its control files
	version string // from version.sh, run once: others commit while tests run
	err     error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// dist runs "make packages" into a temporary directory, once, and returns
// that directory. It skips the test when the machine lacks a tool needed to
// build or unpack the packages.
func dist(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: building the packages takes half a minute")
	}
	for _, tool := range []struct{ name, why string }{
		{"dpkg-deb", "to unpack and inspect the .deb files (apt-get install dpkg)"},
		{"make", "to run make packages (apt-get install make)"},
		{"git", "for the package version, from git describe (apt-get install git)"},
		{"gcc", "to link the binaries with glibc through cgo (apt-get install gcc)"},
	} {
		if _, err := exec.LookPath(tool.name); err != nil {
			t.Skipf("%s not found; it is needed %s", tool.name, tool.why)
		}
	}
	built.once.Do(func() { built.dir, built.version, built.err = makePackages() })
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.dir
}

// makePackages runs make packages as the Makefile does, but into a new
// temporary directory and with the version given, so that the tests know
// it.
func makePackages() (d, version string, err error) {
	root, err := filepath.Abs("..")
	if err != nil {
		return "", "", err
	}
	out, err := exec.Command("sh", "version.sh").Output()
	if ee, ok := err.(*exec.ExitError); ok {
		return "", "", fmt.Errorf("version.sh: %w\n%s", err, ee.Stderr)
	} else if err != nil {
		return "", "", fmt.Errorf("version.sh: %w", err)
	}
	version = strings.TrimSpace(string(out))
	d, err = os.MkdirTemp("", "packaging-test-")
	if err != nil {
		return "", "", err
	}
	if out, err := exec.Command("make", "-C", root, "packages", "DIST="+d, "PKG_VERSION="+version).CombinedOutput(); err != nil {
		return d, "", fmt.Errorf("make packages: %v\n%s", err, out)
	}
	for _, p := range packages {
		deb, err := onlyMatch(filepath.Join(d, p.name+"_*_amd64.deb"))
		if err != nil {
			return d, "", err
		}
		for _, sub := range []string{"x", "control"} {
			if err := os.MkdirAll(filepath.Join(d, sub), 0o755); err != nil {
				return d, "", err
			}
		}
		for _, args := range [][]string{
			{"-x", deb, filepath.Join(d, "x", p.name)},
			{"-e", deb, filepath.Join(d, "control", p.name)},
		} {
			if out, err := exec.Command("dpkg-deb", args...).CombinedOutput(); err != nil {
				return d, "", fmt.Errorf("dpkg-deb %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
	}
	return d, version, nil
}

func onlyMatch(pattern string) (string, error) {
	m, err := filepath.Glob(pattern)
	if err != nil {
		return "", err
	}
	if len(m) != 1 {
		return "", fmt.Errorf("%d files match %s, want 1: %q", len(m), pattern, m)
	}
	return m[0], nil
}

func debOf(t *testing.T, d string, p pkg) string {
	t.Helper()
	f, err := onlyMatch(filepath.Join(d, p.name+"_*_amd64.deb"))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// output runs a command and returns its standard output, failing the test
// with its standard error if it fails.
func output(t *testing.T, name string, args ...string) string {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.Bytes())
	}
	return string(out)
}

// entry is one line of a package's file listing.
type entry struct{ mode, owner, group string }

// TestContents checks each .deb's files, their owners and modes, with
// dpkg-deb --contents: exactly the expected files, all root:root, programs
// 0755 and everything else 0644, directories 0755. sshd runs
// /usr/libexec/teleport-authkeys only if it and every directory above it
// are root-owned and not group- or world-writable (sshd_config(5),
// AuthorizedPrincipalsCommand); and no package may install anything under
// /etc/ssh: the drop-in is the operator's, through install-sshd-config.
func TestContents(t *testing.T) {
	d := dist(t)
	for _, p := range packages {
		t.Run(p.name, func(t *testing.T) {
			listing := debListing(t, debOf(t, d, p))
			files := map[string]string{}
			for path, e := range listing {
				if e.owner != "root" || e.group != "root" {
					t.Errorf("%s is owned by %s:%s, want root:root", path, e.owner, e.group)
				}
				switch {
				case strings.HasPrefix(path, "/etc/ssh"):
					t.Errorf("%s: the package must not touch sshd's configuration", path)
				case strings.HasSuffix(path, "/"):
					if e.mode != dir {
						t.Errorf("directory %s has mode %s, want %s", path, e.mode, dir)
					}
				default:
					files[path] = e.mode
				}
			}
			want := maps.Clone(p.files)
			maps.Copy(want, p.debFiles)
			for path, mode := range want {
				if got, ok := files[path]; !ok {
					t.Errorf("%s is missing", path)
				} else if got != mode {
					t.Errorf("%s has mode %s, want %s", path, got, mode)
				}
			}
			for path := range files {
				if _, ok := want[path]; !ok {
					t.Errorf("unexpected file %s", path)
				}
			}
			for path, mode := range p.files {
				if mode != exe || !strings.HasPrefix(path, "/usr/libexec/") {
					continue
				}
				// sshd checks the directory of the command and every
				// one above it (the package does not list "/").
				for d := filepath.Dir(path); d != "/"; d = filepath.Dir(d) {
					e, ok := listing[d+"/"]
					switch {
					case !ok:
						t.Errorf("%s: the package does not list %s/, so its owner and mode are unknown", path, d)
					case e.owner != "root" || e.mode[5] == 'w' || e.mode[8] == 'w':
						t.Errorf("%s: %s/ is %s %s:%s; sshd refuses a command under a directory that is not root-owned or is group- or world-writable", path, d, e.mode, e.owner, e.group)
					}
				}
			}
		})
	}
}

// debListing returns the .deb's entries by path, directories ending in
// "/", the root as "/".
func debListing(t *testing.T, deb string) map[string]entry {
	t.Helper()
	m := map[string]entry{}
	for _, line := range strings.Split(strings.TrimSpace(output(t, "dpkg-deb", "--contents", deb)), "\n") {
		// -rwxr-xr-x root/root   8704302 2026-11-21 11:20 ./usr/bin/teleport-node
		f := strings.Fields(line)
		if len(f) != 6 {
			t.Fatalf("dpkg-deb --contents: cannot read %q", line)
		}
		owner, group, _ := strings.Cut(f[1], "/")
		m[strings.TrimPrefix(f[5], ".")] = entry{mode: f[0], owner: owner, group: group}
	}
	return m
}

// TestControl checks each .deb's control fields with dpkg-deb --field,
// and its conffiles.
func TestControl(t *testing.T) {
	d := dist(t)
	version := built.version
	if _, err := exec.LookPath("dpkg"); err == nil {
		output(t, "dpkg", "--validate-version", version)
	}
	if strings.Contains(version, "-") {
		t.Errorf("version %q has a Debian revision (or cannot be an RPM version); a native package has none", version)
	}
	for _, p := range packages {
		t.Run(p.name, func(t *testing.T) {
			deb := debOf(t, d, p)
			if want := p.name + "_" + version + "_amd64.deb"; filepath.Base(deb) != want {
				t.Errorf("file name %s, want %s", filepath.Base(deb), want)
			}
			want := map[string]string{
				"Package":      p.name,
				"Version":      version,
				"Architecture": "amd64",
				"Maintainer":   maintainer,
				"Homepage":     homepage,
				"Priority":     "optional",
				"Depends":      p.depends,
				"Recommends":   p.recommends,
			}
			for field, w := range want {
				if got := strings.TrimSpace(output(t, "dpkg-deb", "--field", deb, field)); got != w {
					t.Errorf("%s: %q, want %q", field, got, w)
				}
			}
			for _, field := range []string{"Section", "Description"} {
				if strings.TrimSpace(output(t, "dpkg-deb", "--field", deb, field)) == "" {
					t.Errorf("%s is empty", field)
				}
			}

			var conffiles []string
			b, err := os.ReadFile(filepath.Join(d, "control", p.name, "conffiles"))
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			conffiles = strings.Fields(string(b))
			if !slices.Equal(conffiles, p.conffiles) {
				t.Errorf("conffiles %q, want %q", conffiles, p.conffiles)
			}
		})
	}
}

// TestChangelog checks /usr/share/doc/NAME/changelog.gz, a native
// package's Debian changelog: its entry is for this package and version.
func TestChangelog(t *testing.T) {
	d := dist(t)
	version := built.version
	for _, p := range packages {
		b, err := os.ReadFile(filepath.Join(d, "x", p.name, "usr/share/doc", p.name, "changelog.gz"))
		if err != nil {
			t.Fatal(err)
		}
		z, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: changelog.gz: %v", p.name, err)
		}
		first, _ := bufio.NewReader(z).ReadString('\n')
		if want := p.name + " (" + version + ") unstable; urgency=medium\n"; first != want {
			t.Errorf("%s: changelog starts %q, want %q", p.name, first, want)
		}
	}
}

// TestMaintainerScripts checks the .debs' maintainer scripts: the expected
// ones, as in packaging/scripts, executable, and valid sh (sh -n).
// TestScriptsIdempotent runs them.
func TestMaintainerScripts(t *testing.T) {
	d := dist(t)
	for _, p := range packages {
		t.Run(p.name, func(t *testing.T) {
			control := filepath.Join(d, "control", p.name)
			for _, s := range []string{"preinst", "postinst", "prerm", "postrm", "config"} {
				path := filepath.Join(control, s)
				got, err := os.ReadFile(path)
				src, want := p.scripts[s]
				switch {
				case errors.Is(err, os.ErrNotExist) && !want:
					continue
				case errors.Is(err, os.ErrNotExist):
					t.Errorf("%s is missing", s)
					continue
				case err != nil:
					t.Fatal(err)
				case !want:
					t.Errorf("unexpected %s", s)
					continue
				}
				if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o755 {
					t.Errorf("%s: mode %v, want 0755 (%v)", s, fi.Mode(), err)
				}
				if orig, err := os.ReadFile(filepath.Join("scripts", src)); err != nil || !bytes.Equal(got, orig) {
					t.Errorf("%s differs from scripts/%s (%v)", s, src, err)
				}
				if !bytes.HasPrefix(got, []byte("#!/bin/sh\n")) || !bytes.Contains(got, []byte("\nset -e\n")) {
					t.Errorf("%s: want #!/bin/sh and set -e", s)
				}
				if out, err := exec.Command("sh", "-n", path).CombinedOutput(); err != nil {
					t.Errorf("sh -n %s: %v\n%s", s, err, out)
				}
			}
		})
	}
}

// TestScriptsIdempotent runs every maintainer script in scripts/ twice
// with each argument dpkg or rpm may pass it, with only stand-ins for the
// commands it may call on PATH, which record their calls. A script must
// succeed every time and call nothing else. They are idempotent by design,
// and this checks it: they only create accounts that are missing (with
// systemd-sysusers, which creates only what is missing, or with useradd
// behind getent, called once however often the script runs),
// daemon-reload, and stop a unit, each of which is a no-op the second
// time. None enables or starts a service, and none touches sshd.
//
// Scripts test /run/systemd/system themselves; where it exists, the
// systemctl calls are recorded too.
func TestScriptsIdempotent(t *testing.T) {
	t.Parallel()
	args := map[string][][]string{
		"postinst":  {{"configure"}, {"configure", "0.0.0~old"}, {"abort-upgrade", "0.0.0~old"}, {"1"}, {"2"}},
		"prerm.deb": {{"remove"}, {"upgrade", "0.0.0~new"}, {"deconfigure", "in-favour", "x", "1"}, {"failed-upgrade", "0.0.0~old"}},
		"preun.rpm": {{"0"}, {"1"}},
		"postrm":    {{"remove"}, {"purge"}, {"upgrade", "0.0.0~new"}, {"abort-install"}, {"0"}, {"1"}},
	}
	scripts, err := filepath.Glob("scripts/*")
	if err != nil || len(scripts) == 0 {
		t.Fatalf("no scripts: %v", err)
	}
	for _, script := range scripts {
		name, kind, _ := strings.Cut(filepath.Base(script), ".")
		var p *pkg
		for i := range packages {
			if packages[i].name == name {
				p = &packages[i]
			}
		}
		if args[kind] == nil || (p == nil && kind != "postrm") {
			t.Errorf("%s: unknown script; add it to the test", script)
			continue
		}
		for _, sysusers := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/sysusers=%v", filepath.Base(script), sysusers), func(t *testing.T) {
				bin, log := stubs(t, sysusers)
				for _, a := range args[kind] {
					for range 2 {
						cmd := exec.Command("/bin/sh", append([]string{script}, a...)...)
						cmd.Env = []string{"PATH=" + bin, "LOG=" + log}
						if out, err := cmd.CombinedOutput(); err != nil {
							t.Fatalf("sh %s %s: %v\n%s", script, strings.Join(a, " "), err, out)
						}
					}
				}
				b, err := os.ReadFile(log)
				if err != nil {
					t.Fatal(err)
				}
				calls := strings.Split(strings.TrimSpace(string(b)), "\n")
				if len(b) == 0 {
					calls = nil
				}
				checkCalls(t, p, kind, sysusers, len(args[kind])*2, calls)
			})
		}
	}
}

// stubs writes the stand-in commands to a new directory and returns it and
// the file they record their calls in. getent passwd succeeds for a user
// that useradd created before.
func stubs(t *testing.T, sysusers bool) (bin, log string) {
	t.Helper()
	grep, err := exec.LookPath("grep")
	if err != nil {
		t.Skip("grep not found")
	}
	bin = t.TempDir()
	log = filepath.Join(t.TempDir(), "calls")
	record := "#!/bin/sh\necho \"${0##*/} $*\" >> \"$LOG\"\n"
	cmds := map[string]string{
		"useradd":            record,
		"systemctl":          record,
		"deb-systemd-invoke": record,
		"getent":             record + grep + " -q \"^useradd .* $2\\$\" \"$LOG\"\n",
	}
	if sysusers {
		cmds["systemd-sysusers"] = record
	}
	for name, text := range cmds {
		if err := os.WriteFile(filepath.Join(bin, name), []byte(text), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(log, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return bin, log
}

// checkCalls checks the commands a script called over runs runs.
func checkCalls(t *testing.T, p *pkg, kind string, sysusers bool, runs int, calls []string) {
	t.Helper()
	var unit string
	if p != nil {
		unit = p.name + ".service"
	}
	allowed := func(c string) bool {
		switch {
		case c == "systemctl --system daemon-reload":
			return true
		case kind == "postinst":
			return c == "systemd-sysusers "+p.name+".conf" ||
				c == "getent passwd "+p.user ||
				strings.HasPrefix(c, "useradd --system ") && strings.HasSuffix(c, " "+p.user)
		case kind == "prerm.deb":
			return c == "deb-systemd-invoke stop "+unit
		case kind == "preun.rpm":
			return c == "systemctl stop "+unit
		}
		return false
	}
	count := map[string]int{} // by command
	seen := map[string]bool{}
	for _, c := range calls {
		if !allowed(c) && !seen[c] {
			t.Errorf("unexpected call: %s", c)
		}
		seen[c] = true
		cmd, _, _ := strings.Cut(c, " ")
		count[cmd]++
	}
	if kind != "postinst" {
		return
	}
	switch {
	case sysusers && count["systemd-sysusers"] != runs:
		t.Errorf("systemd-sysusers called %d times in %d runs, want every time", count["systemd-sysusers"], runs)
	case sysusers && count["useradd"] != 0:
		t.Errorf("useradd called %d times although systemd-sysusers is there", count["useradd"])
	case !sysusers && count["useradd"] != 1:
		t.Errorf("without systemd-sysusers, useradd called %d times in %d runs, want once (the first run)", count["useradd"], runs)
	}
}

// TestSysusers checks the sysusers.d files with systemd-sysusers --dry-run
// and that each creates the user the package's unit (or sshd) runs as.
func TestSysusers(t *testing.T) {
	d := dist(t)
	if _, err := exec.LookPath("systemd-sysusers"); err != nil {
		t.Skip("systemd-sysusers not found (apt-get install systemd)")
	}
	for _, p := range packages {
		if p.user == "" {
			continue
		}
		conf := filepath.Join(d, "x", p.name, "usr/lib/sysusers.d", p.name+".conf")
		out, err := exec.Command("systemd-sysusers", "--dry-run", conf).CombinedOutput()
		if err != nil || bytes.Contains(out, []byte(conf)) {
			t.Errorf("systemd-sysusers --dry-run %s: %v\n%s", conf, err, out)
		}
		b, err := os.ReadFile(conf)
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`(?m)^u ` + regexp.QuoteMeta(p.user) + ` - "[^"]+" \S+ /usr/sbin/nologin$`).Match(b) {
			t.Errorf("%s: no line creating system user %s (and its group) with shell /usr/sbin/nologin:\n%s", conf, p.user, b)
		}
		for _, unit := range p.units {
			u, err := os.ReadFile(filepath.Join(d, "x", p.name, unit))
			if err != nil {
				t.Fatal(err)
			}
			if m := regexp.MustCompile(`(?m)^User=(.*)$`).FindSubmatch(u); m != nil && string(m[1]) != p.user {
				t.Errorf("%s runs as %s, but the package creates %s", unit, m[1], p.user)
			}
		}
	}
}

// TestLintian runs lintian on each .deb; errors fail the test, warnings
// and the rest are logged.
func TestLintian(t *testing.T) {
	d := dist(t)
	if _, err := exec.LookPath("lintian"); err != nil {
		t.Skip("lintian not found (apt-get install lintian)")
	}
	for _, p := range packages {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			out, err := exec.Command("lintian", "--fail-on", "error", "--display-info", "--tag-display-limit", "0", debOf(t, d, p)).CombinedOutput()
			if err != nil {
				t.Errorf("lintian: %v\n%s", err, out)
			} else if len(out) > 0 {
				t.Logf("lintian:\n%s", out)
			}
		})
	}
}

// TestSystemdUnits runs systemd-analyze verify on each unit as the package
// installs it, with the programs it starts taken from the package: the
// unit is copied with those programs' paths pointing into the unpacked
// package. (systemd-analyze verify --root needs every unit the service
// refers to inside the root, and systemd 252 cannot combine --root with
// --user.) Any message fails the test, not only an error.
func TestSystemdUnits(t *testing.T) {
	d := dist(t)
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not found (apt-get install systemd)")
	}
	for _, p := range packages {
		root := filepath.Join(d, "x", p.name)
		for _, unit := range p.units {
			t.Run(filepath.Base(unit), func(t *testing.T) {
				text, err := os.ReadFile(filepath.Join(root, unit))
				if err != nil {
					t.Fatal(err)
				}
				for path, mode := range p.files {
					if mode == exe {
						text = bytes.ReplaceAll(text, []byte(path), []byte(root+path))
					}
				}
				copied := filepath.Join(t.TempDir(), filepath.Base(unit))
				if err := os.WriteFile(copied, text, 0o644); err != nil {
					t.Fatal(err)
				}
				args := []string{"verify"}
				runtime := t.TempDir()
				if strings.Contains(unit, "/systemd/user/") {
					args = append(args, "--user")
				}
				cmd := exec.Command("systemd-analyze", append(args, copied)...)
				cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+runtime, "SYSTEMD_LOG_COLOR=0")
				out, err := cmd.CombinedOutput()
				if err != nil || len(out) > 0 {
					t.Errorf("systemd-analyze %s: %v\n%s", strings.Join(args, " "), err, out)
				}
			})
		}
	}
}

// TestConfigFiles checks the configuration files the packages ship: the
// TOML files parse, as installed and with every setting uncommented, and
// name every flag of their program; /etc/default/teleport-node names only
// flags that teleport-node run has.
//
// teleport-ca and teleport-proxy read their configuration file completely
// before they refuse a stray argument, so that refusal, and not a
// "config:" error, shows that the file parsed, without starting anything.
func TestConfigFiles(t *testing.T) {
	d := dist(t)
	for _, c := range []struct{ pkg, bin, file string }{
		{"teleport-ca", "/usr/bin/teleport-ca", "/etc/teleport-ca/teleport-ca.toml"},
		{"teleport-proxy", "/usr/bin/teleport-proxy", "/etc/teleport-proxy/teleport-proxy.toml"},
	} {
		t.Run(c.pkg, func(t *testing.T) {
			root := filepath.Join(d, "x", c.pkg)
			bin := filepath.Join(root, c.bin)
			shipped, err := os.ReadFile(filepath.Join(root, c.file))
			if err != nil {
				t.Fatal(err)
			}
			setting := regexp.MustCompile(`(?m)^#([a-z][a-z0-9-]*) = `)
			keys := map[string]bool{}
			for _, m := range setting.FindAllSubmatch(shipped, -1) {
				keys[string(m[1])] = true
			}
			all := filepath.Join(t.TempDir(), "all.toml")
			if err := os.WriteFile(all, setting.ReplaceAll(shipped, []byte("$1 = ")), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, file := range []string{filepath.Join(root, c.file), all} {
				out, _ := exec.Command(bin, "--config", file, "stray-argument").CombinedOutput()
				if !bytes.Contains(out, []byte("unexpected arguments")) || bytes.Contains(out, []byte("config:")) {
					t.Errorf("%s --config %s does not parse it:\n%s", c.bin, file, out)
				}
			}
			for _, f := range helpFlags(t, bin) {
				if f != "config" && !keys[f] {
					t.Errorf("%s has no (commented-out) key %q for the flag --%s: document it there", c.file, f, f)
				}
			}
		})
	}

	t.Run("teleport-node", func(t *testing.T) {
		root := filepath.Join(d, "x", "teleport-node")
		file := filepath.Join(root, "etc/default/teleport-node")
		if out, err := exec.Command("sh", "-n", file).CombinedOutput(); err != nil {
			t.Errorf("sh -n %s: %v\n%s", file, err, out)
		}
		flags := map[string]bool{}
		for _, f := range helpFlags(t, filepath.Join(root, "usr/bin/teleport-node"), "run") {
			flags[f] = true
		}
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if line != "" && !strings.HasPrefix(line, "#") && !regexp.MustCompile(`^TELEPORT_[A-Z_]+=`).MatchString(line) {
				t.Errorf("not a TELEPORT_ variable: %q", line)
			}
		}
		for _, m := range regexp.MustCompile(`TELEPORT_NODE_ARGS="([^"]*)"`).FindAllStringSubmatch(string(b), -1) {
			for _, w := range strings.Fields(m[1]) {
				if name, ok := strings.CutPrefix(w, "--"); ok {
					name, _, _ = strings.Cut(name, "=")
					if !flags[name] {
						t.Errorf("TELEPORT_NODE_ARGS example %q: teleport-node run has no flag --%s", m[1], name)
					}
				}
			}
		}
		for _, m := range regexp.MustCompile(`TELEPORT_([A-Z_]+)=`).FindAllStringSubmatch(string(b), -1) {
			name := strings.ReplaceAll(strings.ToLower(m[1]), "_", "-")
			if name != "node-args" && !flags[name] {
				t.Errorf("TELEPORT_%s: teleport-node run has no flag --%s", m[1], name)
			}
		}
	})
}

// helpFlags returns the names of the flags the program lists in --help.
func helpFlags(t *testing.T, bin string, args ...string) []string {
	t.Helper()
	out, _ := exec.Command(bin, append(args, "--help")...).CombinedOutput()
	var flags []string
	for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z][a-z0-9-]*)\b`).FindAllSubmatch(out, -1) {
		flags = append(flags, string(m[1]))
	}
	if len(flags) == 0 {
		t.Fatalf("%s --help lists no flags:\n%s", bin, out)
	}
	return flags
}

// TestBinaries checks the programs: position-independent with immediate
// binding (full RELRO), needing nothing but glibc, and no newer glibc
// symbol than the packages' Depends names; and every Go module compiled
// into them is named in the copyright file.
func TestBinaries(t *testing.T) {
	d := dist(t)
	copyright, err := os.ReadFile("debian/copyright")
	if err != nil {
		t.Fatal(err)
	}
	maxGlibc := versionParts(strings.TrimSuffix(strings.TrimPrefix(libc6, "libc6 (>= "), ")"))
	for _, p := range packages {
		for path, mode := range p.files {
			if mode != exe {
				continue
			}
			bin := filepath.Join(d, "x", p.name, path)
			t.Run(filepath.Base(path), func(t *testing.T) {
				f, err := elf.Open(bin)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				if slices.Contains(p.static, path) {
					if libs, err := f.ImportedLibraries(); err != nil || len(libs) != 0 || f.Type != elf.ET_EXEC {
						t.Errorf("want a static executable: type %v, libraries %q (%v)", f.Type, libs, err)
					}
					return
				}
				if f.Type != elf.ET_DYN {
					t.Errorf("ELF type %v, want ET_DYN (PIE)", f.Type)
				}
				if flags, err := f.DynValue(elf.DT_FLAGS_1); err != nil || len(flags) != 1 || flags[0]&uint64(elf.DF_1_NOW) == 0 {
					t.Errorf("not linked with BIND_NOW (DT_FLAGS_1 %v, %v)", flags, err)
				}
				libs, err := f.ImportedLibraries()
				if err != nil || !slices.Equal(libs, []string{"libc.so.6"}) {
					t.Errorf("needs %q (%v), want only libc.so.6 (from %s)", libs, err, libc6)
				}
				syms, err := f.DynamicSymbols()
				if err != nil {
					t.Fatal(err)
				}
				for _, s := range syms {
					if v, ok := strings.CutPrefix(s.Version, "GLIBC_"); ok && slices.Compare(versionParts(v), maxGlibc) > 0 {
						t.Errorf("symbol %s needs GLIBC_%s, newer than %s: raise it in packaging/nfpm/*.yaml", s.Name, v, libc6)
					}
				}
				info, err := buildinfo.ReadFile(bin)
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range info.Deps {
					if !bytes.Contains(copyright, []byte(m.Path)) {
						t.Errorf("Go module %s is compiled in but not named in debian/copyright", m.Path)
					}
				}
			})
		}
	}
}

func versionParts(v string) []int {
	var parts []int
	for _, s := range strings.Split(v, ".") {
		n, _ := strconv.Atoi(s)
		parts = append(parts, n)
	}
	return parts
}

// TestRPM checks the .rpm files with rpm: the same files, owners and
// modes as the .deb, the same configuration files, version and
// maintainer, the requirements and the scriptlets.
func TestRPM(t *testing.T) {
	d := dist(t)
	if _, err := exec.LookPath("rpm"); err != nil {
		t.Skip("rpm not found (apt-get install rpm)")
	}
	version := built.version
	for _, p := range packages {
		t.Run(p.name, func(t *testing.T) {
			rpm, err := onlyMatch(filepath.Join(d, p.name+"-[0-9]*.x86_64.rpm"))
			if err != nil {
				t.Fatal(err)
			}
			files := map[string]string{}
			for _, line := range strings.Split(strings.TrimSpace(output(t, "rpm", "-qp", "--qf", "[%{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILENAMES}\n]", rpm)), "\n") {
				f := strings.Fields(line)
				if len(f) != 4 {
					t.Fatalf("rpm: cannot read %q", line)
				}
				if f[1] != "root" || f[2] != "root" {
					t.Errorf("%s is owned by %s:%s, want root:root", f[3], f[1], f[2])
				}
				if f[0][0] != 'd' {
					files[f[3]] = f[0]
				}
			}
			if !maps.Equal(files, p.files) {
				t.Errorf("rpm -qlp files and modes:\n%v\nwant (as in the .deb):\n%v", files, p.files)
			}
			conf := strings.Fields(output(t, "rpm", "-qpc", rpm))
			if !slices.Equal(conf, p.conffiles) {
				t.Errorf("rpm -qpc: %q, want %q", conf, p.conffiles)
			}
			fields := output(t, "rpm", "-qp", "--qf", "%{NAME}|%{VERSION}|%{ARCH}|%{LICENSE}|%{PACKAGER}|%{URL}", rpm)
			if want := strings.Join([]string{p.name, version, "x86_64", license, maintainer, homepage}, "|"); fields != want {
				t.Errorf("rpm -qp --qf: %q, want %q", fields, want)
			}
			reqs := output(t, "rpm", "-qpR", rpm)
			for _, r := range p.rpmReqs {
				if !slices.Contains(strings.Fields(reqs), r) {
					t.Errorf("rpm -qpR does not list %s:\n%s", r, reqs)
				}
			}
			scripts := output(t, "rpm", "-qp", "--scripts", rpm)
			var got []string
			for _, m := range regexp.MustCompile(`(?m)^(\w+ scriptlet) \(using /bin/sh\):$`).FindAllStringSubmatch(scripts, -1) {
				got = append(got, m[1])
			}
			if !slices.Equal(got, p.rpmScripts) {
				t.Errorf("scriptlets %q, want %q", got, p.rpmScripts)
			}
		})
	}
}
