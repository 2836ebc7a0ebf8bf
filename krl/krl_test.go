package krl

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// sshKeygen is the OpenSSH binary the interoperability tests run; it
// parses KRLs with the same krl.c as sshd.
const sshKeygen = "/usr/bin/ssh-keygen"

// testCA returns a deterministic Ed25519 CA signer, different for each n.
func testCA(t testing.TB, n byte) ssh.Signer {
	t.Helper()
	s, err := ssh.NewSignerFromKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{n}, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// signCert returns a user certificate with serial and keyID signed by ca.
func signCert(t testing.TB, ca ssh.Signer, serial uint64, keyID string) *ssh.Certificate {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	cert := &ssh.Certificate{
		Key:             key,
		Serial:          serial,
		CertType:        ssh.UserCert,
		KeyId:           keyID,
		ValidPrincipals: []string{"alice"},
		ValidBefore:     ssh.CertTimeInfinity,
	}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	return cert
}

// diffKRL describes how got differs from want, or returns "".
func diffKRL(got, want *KRL) string {
	var d []string
	if got.Version != want.Version {
		d = append(d, fmt.Sprintf("Version %d, want %d", got.Version, want.Version))
	}
	if !got.Generated.Equal(want.Generated) || got.Generated.IsZero() != want.Generated.IsZero() {
		d = append(d, fmt.Sprintf("Generated %v, want %v", got.Generated, want.Generated))
	}
	if got.Comment != want.Comment {
		d = append(d, fmt.Sprintf("Comment %q, want %q", got.Comment, want.Comment))
	}
	if len(got.Certs) != len(want.Certs) {
		return strings.Join(append(d, fmt.Sprintf("%d CAs, want %d", len(got.Certs), len(want.Certs))), "; ")
	}
	for i, g := range got.Certs {
		w := want.Certs[i]
		if !bytes.Equal(g.CA.Marshal(), w.CA.Marshal()) {
			d = append(d, fmt.Sprintf("Certs[%d].CA %s, want %s", i, ssh.FingerprintSHA256(g.CA), ssh.FingerprintSHA256(w.CA)))
		}
		if !slices.Equal(g.Serials, w.Serials) {
			d = append(d, fmt.Sprintf("Certs[%d].Serials %v, want %v", i, g.Serials, w.Serials))
		}
		if !slices.Equal(g.Ranges, w.Ranges) {
			d = append(d, fmt.Sprintf("Certs[%d].Ranges %v, want %v", i, g.Ranges, w.Ranges))
		}
		if !slices.Equal(g.KeyIDs, w.KeyIDs) {
			d = append(d, fmt.Sprintf("Certs[%d].KeyIDs %q, want %q", i, g.KeyIDs, w.KeyIDs))
		}
	}
	return strings.Join(d, "; ")
}

type roundTripTest struct {
	name    string
	in      *KRL
	want    *KRL // nil: same as in
	wantHex string
}

func roundTripTests(t testing.TB) []roundTripTest {
	ca1, ca2 := testCA(t, 1).PublicKey(), testCA(t, 2).PublicKey()
	gen := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	return []roundTripTest{
		{
			name: "empty",
			in:   &KRL{},
			wantHex: "5353484b524c0a00" + "00000001" + "0000000000000000" + "0000000000000000" +
				"0000000000000000" + "00000000" + "00000000",
		},
		{
			name: "header only",
			in:   &KRL{Version: 7, Generated: gen.Add(999 * time.Millisecond).In(time.FixedZone("X", 3600)), Comment: "node7 revocations"},
			want: &KRL{Version: 7, Generated: gen, Comment: "node7 revocations"},
		},
		{
			name: "epoch reads back as zero",
			in:   &KRL{Generated: time.Unix(0, 0)},
			want: &KRL{},
		},
		{
			name: "serials sorted and deduplicated",
			in: &KRL{Version: 2, Generated: gen, Certs: []CertSerials{
				{CA: ca1, Serials: []uint64{1<<63 + 5, 3, 1, 3, math.MaxUint64, 2}},
			}},
			want: &KRL{Version: 2, Generated: gen, Certs: []CertSerials{
				{CA: ca1, Serials: []uint64{1, 2, 3, 1<<63 + 5, math.MaxUint64}},
			}},
		},
		{
			name: "same CA merged, order of first appearance kept",
			in: &KRL{Certs: []CertSerials{
				{CA: ca2, Serials: []uint64{9}},
				{CA: ca1, Serials: []uint64{5}},
				{CA: ca2, Serials: []uint64{4, 9}, KeyIDs: []string{"b", "a", "b"}},
			}},
			want: &KRL{Certs: []CertSerials{
				{CA: ca2, Serials: []uint64{4, 9}, KeyIDs: []string{"a", "b"}},
				{CA: ca1, Serials: []uint64{5}},
			}},
		},
		{
			name: "ranges merged and covering serials",
			in: &KRL{Certs: []CertSerials{{
				CA:      ca1,
				Serials: []uint64{1, 10, 15, 21, 22, math.MaxUint64},
				Ranges:  []SerialRange{{20, 20}, {10, 14}, {15, 19}, {30, 40}, {35, 36}, {math.MaxUint64 - 1, math.MaxUint64}, {math.MaxUint64, math.MaxUint64}},
			}}},
			want: &KRL{Certs: []CertSerials{{
				CA:      ca1,
				Serials: []uint64{1, 21, 22},
				Ranges:  []SerialRange{{10, 20}, {30, 40}, {math.MaxUint64 - 1, math.MaxUint64}},
			}}},
		},
		{
			name: "key IDs only, including the empty one",
			in:   &KRL{Certs: []CertSerials{{CA: ca1, KeyIDs: []string{"x", ""}}}},
			want: &KRL{Certs: []CertSerials{{CA: ca1, KeyIDs: []string{"", "x"}}}},
		},
		{
			name: "CA with nothing revoked",
			in:   &KRL{Certs: []CertSerials{{CA: ca1}}},
		},
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tt := range roundTripTests(t) {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			want := tt.want
			if want == nil {
				want = tt.in
			}
			b, err := tt.in.Marshal()
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if tt.wantHex != "" && fmt.Sprintf("%x", b) != tt.wantHex {
				t.Errorf("Marshal = %x, want %s", b, tt.wantHex)
			}
			got, err := Parse(b)
			if err != nil {
				t.Fatalf("Parse(Marshal()): %v", err)
			}
			if d := diffKRL(got, want); d != "" {
				t.Errorf("Parse(Marshal()): %s", d)
			}
			b2, err := got.Marshal()
			if err != nil {
				t.Fatalf("second Marshal: %v", err)
			}
			if !bytes.Equal(b, b2) {
				t.Errorf("second Marshal differs:\n%x\n%x", b, b2)
			}
		})
	}
}

// TestMarshalDoesNotModify checks that Marshal normalizes a copy.
func TestMarshalDoesNotModify(t *testing.T) {
	t.Parallel()
	k := &KRL{Certs: []CertSerials{{CA: testCA(t, 1).PublicKey(), Serials: []uint64{3, 1, 3}}}}
	if _, err := k.Marshal(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(k.Certs[0].Serials, []uint64{3, 1, 3}) {
		t.Errorf("Marshal changed Serials to %v", k.Certs[0].Serials)
	}
}

func TestMarshalErrors(t *testing.T) {
	t.Parallel()
	ca := testCA(t, 1).PublicKey()
	// A 512-bit RSA key: sshd refuses RSA keys under 1024 bits.
	n, _ := new(big.Int).SetString("c9b1b8a4b3f1d1c62c6e6f5f1b9b2a1cf3e9a1d2c3b4a5968778695a4b3c2d1e0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff1", 16)
	smallRSA, err := ssh.NewPublicKey(&rsa.PublicKey{N: n, E: 65537})
	if err != nil {
		t.Fatal(err)
	}
	cert := signCert(t, testCA(t, 2), 1, "host")
	tests := []struct {
		name    string
		k       *KRL
		wantErr error  // checked with errors.Is, if set
		wantMsg string // must appear in the message
	}{
		{"serial 0", &KRL{Certs: []CertSerials{{CA: ca, Serials: []uint64{5, 0}}}}, ErrZeroSerial, "serial 0"},
		{"range from 0", &KRL{Certs: []CertSerials{{CA: ca, Ranges: []SerialRange{{0, 9}}}}}, ErrZeroSerial, "serial 0"},
		{"nil CA", &KRL{Certs: []CertSerials{{CA: ca, Serials: []uint64{1}}, {Serials: []uint64{1}}}}, ErrNilCA, "nil CA key (Certs[1])"},
		{"certificate as CA", &KRL{Certs: []CertSerials{{CA: cert, Serials: []uint64{1}}}}, ErrBadCA, "cert-v01@openssh.com"},
		{"small RSA CA", &KRL{Certs: []CertSerials{{CA: smallRSA, Serials: []uint64{1}}}}, ErrBadCA, "512-bit RSA"},
		{"reversed range", &KRL{Certs: []CertSerials{{CA: ca, Ranges: []SerialRange{{9, 8}}}}}, nil, "reversed serial range 9-8"},
		{"NUL in key ID", &KRL{Certs: []CertSerials{{CA: ca, KeyIDs: []string{"a\x00"}}}}, nil, "NUL"},
		{"NUL in comment", &KRL{Comment: "a\x00b"}, nil, "NUL"},
		{"generated before 1970", &KRL{Generated: time.Unix(-1, 0)}, nil, "generated date"},
		{"generated after 9999", &KRL{Generated: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}, nil, "generated date"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := tt.k.Marshal()
			if err == nil {
				t.Fatalf("Marshal = %x, want an error", b)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Marshal error %q, want %q", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) || !strings.HasPrefix(err.Error(), "krl: ") {
				t.Errorf("Marshal error %q, want it to start with \"krl: \" and mention %q", err, tt.wantMsg)
			}
		})
	}
}

// kb builds KRLs by hand, valid or not, for the parser tests.
type kb []byte

func (b kb) u8(v byte) kb         { return append(b, v) }
func (b kb) u32(v uint32) kb      { return binary.BigEndian.AppendUint32(b, v) }
func (b kb) u64(v uint64) kb      { return binary.BigEndian.AppendUint64(b, v) }
func (b kb) str(s []byte) kb      { return append(b.u32(uint32(len(s))), s...) }
func (b kb) sect(t byte, s kb) kb { return b.u8(t).str(s) }

func header(comment string) kb {
	return kb(magic).u32(1).u64(1).u64(1700000000).u64(0).str(nil).str([]byte(comment))
}

// certSect is a KRL_SECTION_CERTIFICATES section for ca with subsections subs.
func certSect(ca ssh.PublicKey, subs ...kb) kb {
	s := kb(nil).str(ca.Marshal()).str(nil)
	for _, sub := range subs {
		s = append(s, sub...)
	}
	return kb(nil).sect(sectionCertificates, s)
}

func list(serials ...uint64) kb {
	var d kb
	for _, s := range serials {
		d = d.u64(s)
	}
	return kb(nil).sect(certSectionSerialList, d)
}

func srange(lo, hi uint64) kb { return kb(nil).sect(certSectionSerialRange, kb(nil).u64(lo).u64(hi)) }

func bitmap(base uint64, mpint ...byte) kb {
	return kb(nil).sect(certSectionSerialBitmap, kb(nil).u64(base).str(mpint))
}

func keyIDs(ids ...string) kb {
	var d kb
	for _, id := range ids {
		d = d.str([]byte(id))
	}
	return kb(nil).sect(certSectionKeyID, d)
}

func cat(parts ...kb) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

type probe struct {
	serial uint64
	keyID  string
	want   bool
}

type parseTest struct {
	name    string
	in      []byte
	wantErr error // nil: Parse must accept in
	probes  []probe
	// keygenDisagrees marks inputs ssh-keygen accepts and Parse refuses
	// on purpose.
	keygenDisagrees bool
}

// parseTests are hand-made KRLs, signed for ca (testCA 1). The probes
// are certificates by ca; TestParseAgreesWithSSHKeygen runs them through
// ssh-keygen too.
func parseTests(t testing.TB) []parseTest {
	ca := testCA(t, 1).PublicKey()
	other := testCA(t, 2).PublicKey()
	bigBitmap := make([]byte, maxBignum+1)
	bigBitmap[1] = 0xff
	return []parseTest{
		{name: "empty", in: header("")},
		{name: "serial list", in: cat(header("c"), certSect(ca, list(5, 7))),
			probes: []probe{{5, "", true}, {6, "", false}, {7, "", true}, {0, "", false}}},
		{name: "flags and reserved set", in: cat(kb(magic).u32(1).u64(1).u64(2).u64(0xff).str([]byte("rsv")).str(nil), certSect(ca, list(3)))},
		{name: "comment with trailing NUL", in: header("c\x00")},
		{name: "comment with inner NUL", in: header("c\x00d"), wantErr: ErrMalformed},
		{name: "CA with no subsections", in: cat(header(""), certSect(ca))},
		{name: "empty serial list", in: cat(header(""), certSect(ca, list()))},
		{name: "serial 0", in: cat(header(""), certSect(ca, list(3, 0))), wantErr: ErrMalformed},
		{name: "partial serial", in: cat(header(""), certSect(ca, kb(nil).sect(certSectionSerialList, kb(nil).u64(3).u32(1)))), wantErr: ErrMalformed},
		{name: "range", in: cat(header(""), certSect(ca, srange(10, 20), srange(math.MaxUint64, math.MaxUint64))),
			probes: []probe{{9, "", false}, {10, "", true}, {20, "", true}, {21, "", false}, {math.MaxUint64, "", true}}},
		{name: "reversed range", in: cat(header(""), certSect(ca, srange(20, 10))), wantErr: ErrMalformed},
		{name: "range from 0", in: cat(header(""), certSect(ca, srange(0, 10))), wantErr: ErrMalformed},
		{name: "range with trailing data", in: cat(header(""), certSect(ca, kb(nil).sect(certSectionSerialRange, kb(nil).u64(1).u64(2).u64(3)))), wantErr: ErrMalformed},
		{name: "bitmap", in: cat(header(""), certSect(ca, bitmap(10, 0x00, 0x01, 0x05))),
			probes: []probe{{10, "", true}, {11, "", false}, {12, "", true}, {18, "", true}, {19, "", false}}},
		{name: "empty bitmap", in: cat(header(""), certSect(ca, bitmap(0), bitmap(0, 0, 0)))},
		{name: "bitmap at serial 0", in: cat(header(""), certSect(ca, bitmap(0, 0x03))), wantErr: ErrMalformed},
		{name: "bitmap from 0 skipping it", in: cat(header(""), certSect(ca, bitmap(0, 0x02))),
			probes: []probe{{1, "", true}, {2, "", false}}},
		{name: "negative bitmap", in: cat(header(""), certSect(ca, bitmap(1, 0x80))), wantErr: ErrMalformed},
		{name: "bitmap ending at the largest serial", in: cat(header(""), certSect(ca, bitmap(math.MaxUint64-8, 0x01, 0x00))),
			probes: []probe{{math.MaxUint64, "", true}, {math.MaxUint64 - 8, "", false}}},
		{name: "bitmap wrapping", in: cat(header(""), certSect(ca, bitmap(math.MaxUint64-7, 0x01, 0x00))), wantErr: ErrMalformed},
		{name: "largest bitmap", in: cat(header(""), certSect(ca, bitmap(100, bigBitmap...))),
			probes: []probe{{100 + 8*(maxBignum-1) - 1, "", false}, {100 + 8*(maxBignum-1), "", true}, {100 + 8*maxBignum - 1, "", true}}},
		{name: "bitmap too large", in: cat(header(""), certSect(ca, bitmap(100, append([]byte{0}, bigBitmap...)...))), wantErr: ErrMalformed},
		{name: "key IDs", in: cat(header(""), certSect(ca, keyIDs("bob", "carol\x00"))),
			probes: []probe{{0, "bob", true}, {0, "carol", true}, {1, "alice", false}}},
		{name: "key ID with inner NUL", in: cat(header(""), certSect(ca, keyIDs("b\x00ob"))), wantErr: ErrMalformed},
		{name: "empty key ID list", in: cat(header(""), certSect(ca, keyIDs()))},
		{name: "two sections for one CA", in: cat(header(""), certSect(ca, list(5)), certSect(other, list(6)), certSect(ca, list(6))),
			probes: []probe{{5, "", true}, {6, "", true}, {7, "", false}}},
		{name: "bad magic", in: append([]byte("SSHKRL\n\x01"), header("")[8:]...), wantErr: ErrMalformed},
		{name: "format version 2", in: cat(kb(magic).u32(2).u64(1).u64(2).u64(0).str(nil).str(nil)), wantErr: ErrMalformed},
		{name: "truncated header", in: header("")[:30], wantErr: ErrMalformed},
		{name: "truncated section", in: cat(header(""), certSect(ca, list(5)))[:len(header(""))+20], wantErr: ErrMalformed},
		{name: "truncated subsection", in: cat(header(""), kb(nil).sect(sectionCertificates, kb(nil).str(ca.Marshal()).str(nil).u8(certSectionSerialList).u32(16).u64(1))), wantErr: ErrMalformed},
		{name: "bad CA key", in: cat(header(""), kb(nil).sect(sectionCertificates, kb(nil).str([]byte("\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x01x")).str(nil))), wantErr: ErrMalformed},
		{name: "explicit key section", in: cat(header(""), kb(nil).sect(2, kb(nil).str(ca.Marshal()))),
			wantErr: &UnsupportedError{}, keygenDisagrees: true},
		{name: "unknown section", in: cat(header(""), kb(nil).sect(0x77, nil)), wantErr: &UnsupportedError{}},
		{name: "unknown subsection", in: cat(header(""), certSect(ca, kb(nil).sect(0x24, nil))), wantErr: &UnsupportedError{}},
		{name: "wildcard CA", in: cat(header(""), kb(nil).sect(sectionCertificates, kb(nil).str(nil).str(nil).u8(certSectionKeyID).str(kb(nil).str([]byte("bob"))))),
			wantErr: ErrAnyCA, keygenDisagrees: true},
		{name: "generated after 9999", in: cat(kb(magic).u32(1).u64(1).u64(math.MaxUint64).u64(0).str(nil).str(nil)),
			wantErr: ErrMalformed, keygenDisagrees: true},
	}
}

// isErr is errors.Is, or errors.As when want is an *UnsupportedError.
func isErr(err, want error) bool {
	if _, ok := want.(*UnsupportedError); ok {
		var u *UnsupportedError
		return errors.As(err, &u)
	}
	return errors.Is(err, want)
}

func TestParse(t *testing.T) {
	t.Parallel()
	ca := testCA(t, 1)
	for _, tt := range parseTests(t) {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k, err := Parse(tt.in)
			if tt.wantErr != nil {
				if !isErr(err, tt.wantErr) {
					t.Fatalf("Parse error %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			for _, p := range tt.probes {
				if got := k.IsRevoked(signCert(t, ca, p.serial, p.keyID)); got != p.want {
					t.Errorf("IsRevoked(serial %d, key ID %q) = %v, want %v", p.serial, p.keyID, got, p.want)
				}
			}
		})
	}
}

func TestUnsupportedErrorNamesType(t *testing.T) {
	t.Parallel()
	ca := testCA(t, 1).PublicKey()
	tests := []struct {
		in   []byte
		want string
	}{
		{cat(header(""), kb(nil).sect(3, nil)), "section type 0x03 (KRL_SECTION_FINGERPRINT_SHA1)"},
		{cat(header(""), kb(nil).sect(4, nil)), "section type 0x04 (KRL_SECTION_SIGNATURE)"},
		{cat(header(""), kb(nil).sect(0xee, nil)), "section type 0xee (unknown)"},
		{cat(header(""), certSect(ca, kb(nil).sect(0x39, nil))), "certificate subsection type 0x39 (KRL_SECTION_CERT_EXTENSION)"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse error %v, want it to mention %q", err, tt.want)
		}
	}
}

func TestIsRevoked(t *testing.T) {
	t.Parallel()
	ca1, ca2 := testCA(t, 1), testCA(t, 2)
	k := &KRL{Certs: []CertSerials{
		{CA: ca1.PublicKey(), Serials: []uint64{7, 1<<63 + 5}, Ranges: []SerialRange{{100, 200}}, KeyIDs: []string{"gone"}},
		{CA: ca2.PublicKey(), Serials: []uint64{8}},
		{CA: ca1.PublicKey(), Serials: []uint64{9}}, // not normalized
	}}
	tests := []struct {
		ca     ssh.Signer
		serial uint64
		keyID  string
		want   bool
	}{
		{ca1, 7, "", true},
		{ca1, 1<<63 + 5, "", true},
		{ca1, 9, "", true},
		{ca1, 150, "", true},
		{ca1, 8, "", false},
		{ca1, 201, "", false},
		{ca1, 0, "", false},
		{ca1, 0, "gone", true},
		{ca1, 0, "gone\x00really", true},
		{ca2, 7, "", false},
		{ca2, 8, "", true},
		{ca2, 0, "gone", false},
	}
	for _, tt := range tests {
		if got := k.IsRevoked(signCert(t, tt.ca, tt.serial, tt.keyID)); got != tt.want {
			t.Errorf("IsRevoked(CA %s, serial %d, key ID %q) = %v, want %v",
				ssh.FingerprintSHA256(tt.ca.PublicKey()), tt.serial, tt.keyID, got, tt.want)
		}
	}
	var nilKRL *KRL
	if nilKRL.IsRevoked(signCert(t, ca1, 7, "")) || k.IsRevoked(nil) {
		t.Error("IsRevoked on nil = true")
	}
}

// keygen runs ssh-keygen in dir and returns its output and exit code.
func keygen(t *testing.T, dir string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(sshKeygen, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	}
	t.Fatalf("ssh-keygen %s: %v", strings.Join(args, " "), err)
	return "", -1
}

func needKeygen(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(sshKeygen); err != nil {
		t.Skipf("%s not installed: %v", sshKeygen, err)
	}
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// keygenRevoked asks `ssh-keygen -Q` whether the KRL file revokes cert.
func keygenRevoked(t *testing.T, dir, krlFile string, cert *ssh.Certificate) bool {
	t.Helper()
	f, err := os.CreateTemp(dir, "cert-*.pub")
	if err != nil {
		t.Fatal(err)
	}
	certFile := f.Name()
	_, err = f.Write(ssh.MarshalAuthorizedKey(cert))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	out, code := keygen(t, dir, "-Q", "-f", krlFile, certFile)
	switch {
	case code == 0 && strings.Contains(out, ": ok"):
		return false
	case code != 0 && strings.Contains(out, "REVOKED"):
		return true
	}
	t.Fatalf("ssh-keygen -Q -f %s %s: exit %d: %s", krlFile, certFile, code, out)
	return false
}

// TestSSHKeygenReadsMarshal checks that OpenSSH's own KRL code, which
// sshd uses, reads what Marshal writes and revokes exactly what it lists.
func TestSSHKeygenReadsMarshal(t *testing.T) {
	needKeygen(t)
	t.Parallel()
	dir := t.TempDir()
	ca1, ca2 := testCA(t, 11), testCA(t, 12)
	k := &KRL{
		Version:   3,
		Generated: time.Now(),
		Comment:   "test KRL",
		Certs: []CertSerials{
			{CA: ca1.PublicKey(), Serials: []uint64{42, 1, 1<<63 + 5, 7}},
			{CA: ca2.PublicKey(), Serials: []uint64{1000}},
			{CA: ca1.PublicKey(), Ranges: []SerialRange{{1000, 1999}, {math.MaxUint64 - 1, math.MaxUint64}}, KeyIDs: []string{"revoked-id"}},
		},
	}
	b, err := k.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	krlFile := writeFile(t, dir, "revoked.krl", b)
	if out, code := keygen(t, dir, "-Q", "-l", "-f", krlFile); code != 0 || !strings.Contains(out, "# KRL version 3") {
		t.Fatalf("ssh-keygen -Q -l: exit %d:\n%s", code, out)
	}
	listed := func(s uint64) bool {
		return s == 1 || s == 7 || s == 42 || s == 1<<63+5 || (s >= 1000 && s <= 1999) || s >= math.MaxUint64-1
	}
	serials := []uint64{0, 1, 2, 6, 7, 8, 41, 42, 43, 999, 1000, 1500, 1999, 2000,
		1<<63 + 4, 1<<63 + 5, 1<<63 + 6, math.MaxUint64 - 2, math.MaxUint64 - 1, math.MaxUint64}
	for _, s := range serials {
		for _, tc := range []struct {
			ca   ssh.Signer
			want bool
		}{{ca1, listed(s)}, {ca2, s == 1000}} {
			cert := signCert(t, tc.ca, s, "user")
			if got := keygenRevoked(t, dir, krlFile, cert); got != tc.want {
				t.Errorf("ssh-keygen: serial %d by %s revoked = %v, want %v", s, ssh.FingerprintSHA256(tc.ca.PublicKey()), got, tc.want)
			}
			if got := k.IsRevoked(cert); got != tc.want {
				t.Errorf("IsRevoked: serial %d by %s = %v, want %v", s, ssh.FingerprintSHA256(tc.ca.PublicKey()), got, tc.want)
			}
		}
	}
	for _, tc := range []struct {
		ca   ssh.Signer
		want bool
	}{{ca1, true}, {ca2, false}} {
		cert := signCert(t, tc.ca, 0, "revoked-id")
		if got := keygenRevoked(t, dir, krlFile, cert); got != tc.want {
			t.Errorf("ssh-keygen: key ID revoked-id by %s revoked = %v, want %v", ssh.FingerprintSHA256(tc.ca.PublicKey()), got, tc.want)
		}
	}
}

// TestSSHKeygenReadsEmpty checks that an empty KRL loads and revokes
// nothing: sshd locks everybody out if it cannot load the file.
func TestSSHKeygenReadsEmpty(t *testing.T) {
	needKeygen(t)
	t.Parallel()
	dir := t.TempDir()
	for i, k := range []*KRL{{}, {Version: 1, Generated: time.Now(), Comment: "nothing revoked yet"}} {
		b, err := k.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		krlFile := writeFile(t, dir, fmt.Sprintf("empty%d.krl", i), b)
		if keygenRevoked(t, dir, krlFile, signCert(t, testCA(t, 1), 1, "user")) {
			t.Errorf("empty KRL %d revokes serial 1", i)
		}
	}
}

// keygenSpec is the `ssh-keygen -k` spec TestParseSSHKeygenKRL revokes,
// chosen so that ssh-keygen writes list, range and bitmap subsections.
const keygenSpec = `serial: 5
serial: 7
serial: 9
serial: 100-200
serial: 1000-1010
serial: 4000
serial: 4002
serial: 9223372036854775813
serial: 18446744073709551600-18446744073709551615
id: bob
`

// makeKeygenKRL has ssh-keygen write a KRL from keygenSpec for ca.
func makeKeygenKRL(t *testing.T, dir string, ca ssh.PublicKey) []byte {
	t.Helper()
	caFile := writeFile(t, dir, "ca.pub", ssh.MarshalAuthorizedKey(ca))
	specFile := writeFile(t, dir, "spec", []byte(keygenSpec))
	if out, code := keygen(t, dir, "-k", "-f", "out.krl", "-s", caFile, specFile); code != 0 {
		t.Fatalf("ssh-keygen -k: exit %d: %s", code, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "out.krl"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestParseSSHKeygenKRL checks that Parse reads a KRL written by
// `ssh-keygen -k` and that IsRevoked agrees with it.
func TestParseSSHKeygenKRL(t *testing.T) {
	needKeygen(t)
	t.Parallel()
	dir := t.TempDir()
	ca1, ca2 := testCA(t, 21), testCA(t, 22)
	b := makeKeygenKRL(t, dir, ca1.PublicKey())
	k, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if len(k.Certs) != 1 || !bytes.Equal(k.Certs[0].CA.Marshal(), ca1.PublicKey().Marshal()) {
		t.Fatalf("Parse: %d CAs, want ca1 only", len(k.Certs))
	}
	listed := func(s uint64) bool {
		return s == 5 || s == 7 || s == 9 || (s >= 100 && s <= 200) || (s >= 1000 && s <= 1010) ||
			s == 4000 || s == 4002 || s == 1<<63+5 || s >= 18446744073709551600
	}
	serials := []uint64{0, 1, 4, 5, 6, 7, 8, 9, 10, 99, 100, 150, 200, 201, 999, 1000, 1005, 1010, 1011,
		3999, 4000, 4001, 4002, 4003, 1<<63 + 4, 1<<63 + 5, 1<<63 + 6,
		18446744073709551599, 18446744073709551600, math.MaxUint64}
	krlFile := filepath.Join(dir, "out.krl")
	for _, s := range serials {
		cert := signCert(t, ca1, s, "user")
		if got := k.IsRevoked(cert); got != listed(s) {
			t.Errorf("IsRevoked(serial %d) = %v, want %v", s, got, listed(s))
		}
		if got := keygenRevoked(t, dir, krlFile, cert); got != listed(s) {
			t.Errorf("ssh-keygen: serial %d revoked = %v, want %v", s, got, listed(s))
		}
		if k.IsRevoked(signCert(t, ca2, s, "user")) {
			t.Errorf("IsRevoked(serial %d by CA2) = true", s)
		}
	}
	if !k.IsRevoked(signCert(t, ca1, 0, "bob")) || !k.IsRevoked(signCert(t, ca1, 3, "bob")) {
		t.Error("key ID bob not revoked")
	}
	// What Parse read marshals to a KRL ssh-keygen reads the same way.
	b2, err := k.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	ours := writeFile(t, dir, "ours.krl", b2)
	for _, s := range []uint64{4, 5, 150, 1011, 4002, math.MaxUint64} {
		if got := keygenRevoked(t, dir, ours, signCert(t, ca1, s, "user")); got != listed(s) {
			t.Errorf("ssh-keygen on re-marshalled KRL: serial %d revoked = %v, want %v", s, got, listed(s))
		}
	}
}

// TestParseAgreesWithSSHKeygen runs the hand-made KRLs of parseTests
// through ssh-keygen: it must accept exactly those Parse accepts (but for
// the ones marked keygenDisagrees) and revoke the same probes.
func TestParseAgreesWithSSHKeygen(t *testing.T) {
	needKeygen(t)
	t.Parallel()
	ca := testCA(t, 1)
	for i, tt := range parseTests(t) {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			krlFile := writeFile(t, dir, fmt.Sprintf("%d.krl", i), tt.in)
			out, code := keygen(t, dir, "-Q", "-l", "-f", krlFile)
			keygenOK := code == 0
			parseOK := tt.wantErr == nil
			if keygenOK != parseOK && !tt.keygenDisagrees {
				t.Fatalf("ssh-keygen accepts = %v, Parse accepts = %v; ssh-keygen said (exit %d):\n%s", keygenOK, parseOK, code, out)
			}
			if tt.keygenDisagrees && (!keygenOK || parseOK) {
				t.Fatalf("expected ssh-keygen to accept and Parse to refuse; ssh-keygen exit %d", code)
			}
			for _, p := range tt.probes {
				if got := keygenRevoked(t, dir, krlFile, signCert(t, ca, p.serial, p.keyID)); got != p.want {
					t.Errorf("ssh-keygen: serial %d key ID %q revoked = %v, want %v", p.serial, p.keyID, got, p.want)
				}
			}
		})
	}
}

// FuzzParse checks that Parse never panics and that whatever it accepts
// marshals and parses back to the same KRL. Seeds: the round-trip and
// parse tables here, and testdata/fuzz/FuzzParse (KRLs from ssh-keygen
// and truncations).
func FuzzParse(f *testing.F) {
	for _, tt := range roundTripTests(f) {
		b, err := tt.in.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		for _, n := range []int{len(b) / 2, len(b) - 1} {
			f.Add(b[:n])
		}
	}
	for _, tt := range parseTests(f) {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := Parse(b)
		if err != nil {
			if k != nil {
				t.Fatal("Parse returned a KRL and an error")
			}
			return
		}
		b2, err := k.Marshal()
		if err != nil {
			t.Fatalf("Parse accepted a KRL Marshal refuses: %v", err)
		}
		k2, err := Parse(b2)
		if err != nil {
			t.Fatalf("Parse(Marshal(Parse(b))): %v", err)
		}
		if d := diffKRL(k2, k); d != "" {
			t.Fatalf("round trip changed the KRL: %s", d)
		}
		b3, err := k2.Marshal()
		if err != nil || !bytes.Equal(b2, b3) {
			t.Fatalf("Marshal not stable: %v", err)
		}
	})
}
