// Command teleport-authkeys is exec'd by sshd on every certificate login
// as AuthorizedPrincipalsCommand or AuthorizedKeysCommand; see package
// authkeys.
package main

import (
	"os"

	"github.com/opensshca/suite/authkeys"
)

func main() {
	os.Exit(authkeys.Main(os.Args[1:], os.Stdout, os.Stderr))
}
