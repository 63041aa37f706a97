// Command nonewprivs stands in for the program of
// registry.k8s.io/e2e-test-images/nonewprivs: installed setuid root, it prints
// its effective uid, which is 0 unless no_new_privs stopped the setuid bit.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Printf("Effective uid: %d\n", os.Geteuid())
}
