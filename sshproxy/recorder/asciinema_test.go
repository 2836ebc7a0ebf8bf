package recorder

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestAsciinemaCat has the real asciinema (Debian's 2.2) read a recording:
// `asciinema cat` must print exactly the recorded output, which shows that
// players accept the header and every event, and that the text survived
// splitting, JSON escaping and UTF-8 repair.
func TestAsciinemaCat(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("asciinema")
	if err != nil {
		t.Skip("asciinema not installed (apt-get install -y asciinema); skipping the player check")
	}
	writes := [][]byte{
		[]byte("$ "),
		[]byte("echo h\xc3"), []byte("\xa9llo \xe2"), []byte("\x82"), []byte("\xac \xf0\x9f"), []byte("\x98\x80\r\n"),
		[]byte("\x1b[1;31mred\x1b[0m \"quotes\" \\ </script> & \u2028 \u2029 \t\x00\x07\r\n"),
		[]byte("bad \xff\xfe byte, cut \xe2\x82"),
	}
	var want []byte
	for _, w := range writes {
		want = append(want, w...)
	}
	want = []byte(string([]rune(string(want))))

	dir := t.TempDir()
	clock := newClock()
	r, err := Create(dir, "cat-0", Header{Width: 100, Height: 30, Term: "xterm", User: "alice", Node: "db-1"},
		Options{Clock: clock.Now, RecordInput: true})
	must(t, err)
	for i, w := range writes {
		must(t, r.Output(w))
		must(t, r.Input([]byte(fmt.Sprintf("typed %d\r", i))))
		must(t, r.Resize(100+i, 30))
		clock.Advance(10 * time.Millisecond)
	}
	must(t, r.Close())

	got := runWithTTY(t, bin, "cat", filepath.Join(dir, "cat-0.cast"))
	if !bytes.Equal(got, want) {
		t.Errorf("asciinema cat printed\n%q\nwant\n%q", got, want)
	}
}

// runWithTTY runs a command on a new pseudo-terminal (asciinema cat opens
// /dev/tty) with stdout to a pipe, and returns what it printed there.
func runWithTTY(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	master, slave := openPTY(t)
	defer master.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, &stdout, &stderr
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir(), "LANG=C.UTF-8", "PYTHONIOENCODING=utf-8", "TERM=dumb"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	err := cmd.Run()
	slave.Close()
	if err != nil {
		t.Fatalf("%s %q: %v\nstderr:\n%s", name, args, err, stderr.Bytes())
	}
	return stdout.Bytes()
}

// openPTY opens a new pseudo-terminal pair.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		master.Close()
		t.Fatalf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		master.Close()
		t.Fatalf("ptsname: %v", err)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		master.Close()
		t.Fatalf("opening the pty slave: %v", err)
	}
	return master, slave
}
