// Package krl encodes OpenSSH Key Revocation Lists (KRLs), the binary
// format that sshd reads from the file named by its RevokedKeys option, as
// specified in OpenSSH's PROTOCOL.krl.
//
// The suite revokes certificates, never plain keys: a [KRL] lists, for each
// CA key, the serial numbers (and optionally serial ranges and key IDs) of
// the certificates that CA signed and that must no longer be accepted. The
// node daemon writes the file with [KRL.Marshal]; sshd 9.2 reloads it on
// every public-key authentication and checks the offered certificate
// against the section for the certificate's signing CA.
//
// A KRL that sshd cannot parse is not ignored: sshd treats every key as
// revoked and nobody can log in. Marshal therefore refuses, with an error,
// everything OpenSSH's krl.c would reject when loading the file: serial 0,
// reversed ranges, NUL bytes in the comment or in key IDs, CA keys that
// sshd cannot parse, and files larger than sshd reads. An empty KRL (no
// sections) is valid and revokes nothing. Marshal writes no signature
// section: OpenSSH never checks KRL signatures on load and 9.4 and later
// refuse them.
//
// [Parse] is the inverse of Marshal, for tests, fuzzing and tools. It reads
// KRLs made of certificate sections (PROTOCOL.krl section 2) with serial
// list, serial range, serial bitmap and key ID subsections, which covers
// what Marshal and `ssh-keygen -k` write for certificate revocations. Other
// section types are refused with an [*UnsupportedError], and certificate
// sections for "any CA" (an empty ca_key) with [ErrAnyCA].
package krl
