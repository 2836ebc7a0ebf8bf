package api

import "time"

// PathNodeAudit takes a node's batch of login denials (POST []NodeDenial,
// node client certificate): the refusals teleport-authkeys made on the
// node, which sshd reports to the user only as "Permission denied".
const PathNodeAudit = Version + "/nodes/audit"

// NodeDenial is one login teleport-authkeys refused on a node.
type NodeDenial struct {
	// ID makes a batch sent twice (an answer lost) stored once.
	ID     string    `json:"id"`
	Time   time.Time `json:"time"`
	Login  string    `json:"login"`            // the account asked for (%u)
	KeyID  string    `json:"key_id,omitempty"` // the certificate's KeyId (%i)
	Serial string    `json:"serial,omitempty"` // the certificate's serial (%s)
	Reason string    `json:"reason"`
}
