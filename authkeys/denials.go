package authkeys

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"strconv"
	"time"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/internal/nodedir"
)

// MaxDenialLog bounds the denial log teleport-authkeys appends to; past
// it, denials go to syslog only until teleport-node has sent the log to
// the CA (a flood of refused logins cannot fill the disk).
const MaxDenialLog = 1 << 20

// recordDenial appends one refused login to the node's denial log, which
// teleport-node sends to the CA's audit log. Best effort: syslog has the
// denial in any case, and sshd must not wait on a disk.
func recordDenial(dir nodedir.Dir, now time.Time, login, keyID, serial, reason string) {
	f, err := os.OpenFile(dir.Path(nodedir.Denials), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o660)
	if err != nil {
		return
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || fi.Size() > MaxDenialLog {
		return
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	b, err := json.Marshal(api.NodeDenial{
		ID: hex.EncodeToString(id[:]), Time: now.UTC(),
		Login: clip(login, 64), KeyID: clip(keyID, 256), Serial: clip(serial, 20), Reason: clip(reason, 512),
	})
	if err != nil {
		return
	}
	// One write of a whole line: O_APPEND keeps concurrent sshd children's
	// lines apart.
	_, _ = f.Write(append(b, '\n'))
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// certFields are the KeyId and serial of the certificate a login offered:
// sshd's %i and %s in principals mode, read from %t %k in keys mode.
func certFields(mode, a, b string) (keyID, serial string) {
	if mode != "keys" {
		return a, b
	}
	cert, err := ParseOfferedCert(a, b)
	if err != nil {
		return "", ""
	}
	return cert.KeyId, strconv.FormatUint(cert.Serial, 10)
}
