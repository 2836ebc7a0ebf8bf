package keyhelper

import (
	"errors"
	"math"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestAgentLifetime(t *testing.T) {
	now := time.Unix(1_800_000_000, 250_000_000) // x.25 s
	sec := uint64(now.Unix())
	tests := []struct {
		name        string
		validBefore uint64
		want        uint32
		wantExpired bool
	}{
		{name: "one hour", validBefore: sec + 3600, want: 3599}, // 3599.75 s left, rounded down
		{name: "under a second left", validBefore: sec + 1, want: 1},
		{name: "ends this second", validBefore: sec, wantExpired: true},
		{name: "expired", validBefore: sec - 60, wantExpired: true},
		{name: "epoch", validBefore: 0, wantExpired: true},
		{name: "largest uint32", validBefore: sec + math.MaxUint32 + 1, want: math.MaxUint32},
		{name: "beyond uint32", validBefore: sec + math.MaxUint32*4, want: math.MaxUint32},
		{name: "beyond int64", validBefore: math.MaxInt64 + 1, want: math.MaxUint32},
		{name: "largest int64", validBefore: math.MaxInt64, want: math.MaxUint32},
		{name: "infinity", validBefore: ssh.CertTimeInfinity, want: math.MaxUint32},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := AgentLifetime(tt.validBefore, now)
			var ee *ExpiredError
			if tt.wantExpired {
				if !errors.As(err, &ee) {
					t.Fatalf("AgentLifetime = %d, %v; want an *ExpiredError", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("AgentLifetime = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
}

func TestCertEnd(t *testing.T) {
	if got := CertEnd(&ssh.Certificate{ValidBefore: 1_800_000_000}); got.Unix() != 1_800_000_000 {
		t.Errorf("CertEnd = %v", got)
	}
	if got := CertEnd(&ssh.Certificate{ValidBefore: ssh.CertTimeInfinity}); got.UTC().Year() != 9999 {
		t.Errorf("CertEnd(infinity) = %v, want the end of year 9999", got)
	}
}
