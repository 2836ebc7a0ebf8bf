package storetest

import (
	"path/filepath"
	"strings"
	"testing"
)

// Without the server binary, the etcd tests fail and say what to install.
func TestEtcdMissingBinary(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "etcd")
	err := etcdAvailable(missing)
	if err == nil {
		t.Fatalf("etcdAvailable(%s) = nil", missing)
	}
	for _, want := range []string{missing, "apt-get install etcd-server", SkipEtcdEnv + "=1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}
