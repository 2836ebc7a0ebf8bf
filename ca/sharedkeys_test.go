package ca

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/opensshca/suite/ca/store"
)

func testKEK(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, KeyFileSize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// A sealed key opens only under its own name and key: altered bytes, a
// value moved to another name (the associated data) or another key are
// refused.
func TestKeySealer(t *testing.T) {
	t.Parallel()
	s, err := newKeySealer(testKEK(t))
	if err != nil {
		t.Fatal(err)
	}
	other, err := newKeySealer(testKEK(t))
	if err != nil {
		t.Fatal(err)
	}
	// A stand-in for a key file's text (no key: just its first line).
	plain := []byte("-----BEGIN " + "OPENSSH PRIVATE KEY-----\n...")
	sealed, err := s.seal(fileUserCA, plain, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, plain[:20]) {
		t.Fatal("sealed value holds the plain text")
	}
	if got, err := s.open(fileUserCA, sealed); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("open = %q, %v; want the plain text", got, err)
	}
	flip := func(i int) []byte {
		b := bytes.Clone(sealed)
		b[i] ^= 1
		return b
	}
	tests := []struct {
		name   string
		sealer *keySealer
		key    string
		value  []byte
	}{
		{"tampered ciphertext", s, fileUserCA, flip(len(sealed) / 2)},
		{"tampered nonce", s, fileUserCA, flip(0)},
		{"tampered tag", s, fileUserCA, flip(len(sealed) - 1)},
		{"truncated", s, fileUserCA, sealed[:10]},
		{"moved to another name (wrong AAD)", s, fileHostCA, sealed},
		{"another key", other, fileUserCA, sealed},
	}
	for _, tt := range tests {
		if got, err := tt.sealer.open(tt.key, tt.value); err == nil {
			t.Errorf("%s: opened as %q; want refused", tt.name, got)
		}
	}
}

// A record sealed under one key file is refused under another with
// ErrWrongKeyFile; a record whose key id was forged to match is refused
// as altered.
func TestSealedKeysRecord(t *testing.T) {
	t.Parallel()
	kek := testKEK(t)
	s, _ := newKeySealer(kek)
	pems, err := generateKeyPEMs(KeyEd25519, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.sealAll(pems, newFakeClock().Now(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.openAll(b)
	if err != nil || !bytes.Equal(got[fileTLSRootKey], pems[fileTLSRootKey]) {
		t.Fatalf("openAll = %v; want the keys back", err)
	}
	if bytes.Contains(b, []byte("PRIVATE KEY")) {
		t.Error("the record holds a private key in the clear")
	}
	other, _ := newKeySealer(testKEK(t))
	if _, err := other.openAll(b); !errors.Is(err, ErrWrongKeyFile) {
		t.Errorf("openAll with another key = %v; want ErrWrongKeyFile", err)
	}
	var rec sealedKeys
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	rec.KeyID = other.id
	forged, _ := json.Marshal(rec)
	if _, err := other.openAll(forged); err == nil || errors.Is(err, ErrWrongKeyFile) || !strings.Contains(err.Error(), "altered") {
		t.Errorf("openAll of a record with a forged key id = %v; want refused as altered", err)
	}
	rec.KeyID = s.id
	rec.Keys[fileUserCA], rec.Keys[fileHostCA] = rec.Keys[fileHostCA], rec.Keys[fileUserCA]
	swapped, _ := json.Marshal(rec)
	if _, err := s.openAll(swapped); err == nil {
		t.Error("openAll of a record with two keys swapped succeeded")
	}
}

func TestReadKeyFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	gen := filepath.Join(dir, "gen")
	if err := GenerateKeyFile(gen, rand.Reader); err != nil {
		t.Fatal(err)
	}
	if err := GenerateKeyFile(gen, rand.Reader); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("GenerateKeyFile over an existing file = %v; want refused", err)
	}
	raw := testKEK(t)
	write := func(name string, b []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		path    string
		want    []byte
		wantErr string
	}{
		{"generated", gen, nil, ""},
		{"raw", write("raw", raw, 0o600), raw, ""},
		{"hex", write("hex", []byte(hex.EncodeToString(raw)+"\n"), 0o400), raw, ""},
		{"group readable", write("group", raw, 0o640), nil, "chmod 600"},
		{"world readable", write("world", raw, 0o604), nil, "chmod 600"},
		{"missing", filepath.Join(dir, "missing"), nil, "no such file"},
		{"short", write("short", raw[:16], 0o600), nil, "neither 32 bytes nor 64 hex digits"},
		{"zeros", write("zeros", make([]byte, 32), 0o600), nil, "not a random key"},
		{"directory", dir, nil, "not a regular file"},
	}
	for _, tt := range tests {
		got, err := ReadKeyFile(tt.path)
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: ReadKeyFile = %v; want an error containing %q", tt.name, err, tt.wantErr)
			}
		case err != nil:
			t.Errorf("%s: ReadKeyFile: %v", tt.name, err)
		case len(got) != KeyFileSize || (tt.want != nil && !bytes.Equal(got, tt.want)):
			t.Errorf("%s: ReadKeyFile = %x; want %x", tt.name, got, tt.want)
		}
	}
}

func sharedAuthority(t *testing.T, st store.Store, kek []byte) (*Authority, error) {
	t.Helper()
	a, err := New(Config{DataDir: filepath.Join(t.TempDir(), "ca"), Store: st, KeyEncryptionKey: kek, Argon2: cheapArgon2})
	if a != nil {
		t.Cleanup(func() { a.Close() })
	}
	return a, err
}

// Replicas starting at once on one store elect one set of keys; none is
// written to their data dirs; a wrong key is refused without a write.
func TestSharedKeysElection(t *testing.T) {
	t.Parallel()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "state.db"), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	kek := testKEK(t)
	const n = 4
	as := make([]*Authority, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { as[i], errs[i] = sharedAuthority(t, st, kek) })
	}
	wg.Wait()
	created := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("replica %d: %v", i, errs[i])
		}
		if as[i].Pin() != as[0].Pin() || as[i].Info().UserCA != as[0].Info().UserCA {
			t.Errorf("replica %d has pin %s, replica 0 %s", i, as[i].Pin(), as[0].Pin())
		}
		if as[i].Created {
			created++
		}
		for _, f := range keyFileNames {
			if _, err := os.Stat(filepath.Join(as[i].cfg.DataDir, f)); err == nil {
				t.Errorf("replica %d wrote %s to its data dir", i, f)
			}
		}
	}
	if created != 1 {
		t.Errorf("%d replicas say they created the keys; want 1", created)
	}

	_, rev, _ := st.List(context.Background(), "meta/")
	if _, err := sharedAuthority(t, st, testKEK(t)); !errors.Is(err, ErrWrongKeyFile) {
		t.Errorf("New with another key = %v; want ErrWrongKeyFile", err)
	}
	if _, rev2, _ := st.List(context.Background(), "meta/"); rev2 != rev {
		t.Errorf("a refused start wrote to the store (revision %d → %d)", rev, rev2)
	}
}

// A CA with key files in its data dir moves to a shared store: its first
// start with a key seals those keys into the store, and a replica with an
// empty data dir then serves with them.
func TestSharedKeysImport(t *testing.T) {
	t.Parallel()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "state.db"), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	dir := filepath.Join(t.TempDir(), "ca")
	old, err := New(Config{DataDir: dir, Store: st, Argon2: cheapArgon2})
	if err != nil {
		t.Fatal(err)
	}
	pin := old.Pin()
	old.Close()

	kek := testKEK(t)
	if _, err := sharedAuthority(t, st, kek); err == nil || !strings.Contains(err.Error(), "holds no sealed CA keys") {
		t.Fatalf("replica with an empty data dir before the import: %v; want refused", err)
	}
	moved, err := New(Config{DataDir: dir, Store: st, KeyEncryptionKey: kek, Argon2: cheapArgon2})
	if err != nil {
		t.Fatalf("first start with a key: %v", err)
	}
	defer moved.Close()
	if moved.Pin() != pin || moved.Created {
		t.Errorf("after the import pin %s (created %v); want %s", moved.Pin(), moved.Created, pin)
	}
	b, err := sharedAuthority(t, st, kek)
	if err != nil || b.Pin() != pin {
		t.Fatalf("replica after the import: %v", err)
	}
}
