package ca

import (
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Argon2Params are the argon2id parameters of new password hashes. Stored
// hashes carry their own parameters (PHC string format), so changing these
// affects only passwords set afterwards. See docs/SECURITY.md.
type Argon2Params struct {
	Time      uint32 // passes
	MemoryKiB uint32
	Threads   uint8
}

// DefaultArgon2 follows RFC 9106's second recommended option scaled to a
// 2-core CA host: 64 MiB, 3 passes, 2 lanes.
var DefaultArgon2 = Argon2Params{Time: 3, MemoryKiB: 64 << 10, Threads: 2}

const (
	argonSaltLen = 16
	argonKeyLen  = 32
	// Limits on parameters read back from the store, so that a damaged
	// record cannot make the CA allocate gigabytes.
	maxArgonMemoryKiB = 1 << 20
	maxArgonTime      = 16
)

func (p Argon2Params) check() error {
	if p.Time < 1 || p.Time > maxArgonTime || p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > maxArgonMemoryKiB || p.Threads < 1 {
		return fmt.Errorf("ca: argon2 parameters %+v out of range (time 1..%d, memory 8*threads..%d KiB, threads >= 1)", p, maxArgonTime, maxArgonMemoryKiB)
	}
	return nil
}

// hashConcurrency bounds concurrent hashes: each holds MemoryKiB of RAM.
func hashConcurrency() int { return max(runtime.NumCPU(), 2) }

var b64 = base64.RawStdEncoding

// hashPassword returns the PHC string
// $argon2id$v=19$m=<KiB>,t=<time>,p=<threads>$<salt>$<hash>.
func hashPassword(pw string, p Argon2Params, r io.Reader) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := io.ReadFull(r, salt); err != nil {
		return "", err
	}
	h := argon2.IDKey([]byte(pw), salt, p.Time, p.MemoryKiB, p.Threads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.MemoryKiB, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(h)), nil
}

var errBadHash = errors.New("ca: stored password hash is malformed")

// verifyPassword reports whether pw matches the PHC string, in constant
// time with respect to the hash.
func verifyPassword(pw, phc string) (bool, error) {
	p, salt, want, err := parsePHC(phc)
	if err != nil {
		return false, err
	}
	got := argon2.IDKey([]byte(pw), salt, p.Time, p.MemoryKiB, p.Threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

func parsePHC(s string) (p Argon2Params, salt, hash []byte, err error) {
	f := strings.Split(s, "$")
	if len(f) != 6 || f[0] != "" || f[1] != "argon2id" || f[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return p, nil, nil, errBadHash
	}
	var threads uint32
	if _, err := fmt.Sscanf(f[3], "m=%d,t=%d,p=%d", &p.MemoryKiB, &p.Time, &threads); err != nil || threads > 255 {
		return p, nil, nil, errBadHash
	}
	p.Threads = uint8(threads)
	if p.check() != nil {
		return p, nil, nil, errBadHash
	}
	if salt, err = b64.DecodeString(f[4]); err != nil || len(salt) < 8 {
		return p, nil, nil, errBadHash
	}
	if hash, err = b64.DecodeString(f[5]); err != nil || len(hash) < 16 || len(hash) > 64 {
		return p, nil, nil, errBadHash
	}
	return p, salt, hash, nil
}

// checkNewPassword refuses passwords too weak to be worth hashing.
func checkNewPassword(pw string) error {
	switch {
	case len(pw) < 8:
		return invalidf("password is shorter than 8 characters")
	case len(pw) > 1024:
		return invalidf("password is longer than 1024 bytes")
	case strings.ContainsAny(pw, "\n\r\x00"):
		return invalidf("password contains a newline or NUL")
	}
	return nil
}
