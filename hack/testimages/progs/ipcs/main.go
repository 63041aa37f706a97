// Command ipcs is a small util-linux-compatible ipcs for the test busybox
// image (Debian's busybox has no ipcs applet; critest runs "ipcs -m" to see
// whether a container shares the host's IPC namespace). It reads
// /proc/sysvipc and prints the same tables as util-linux:
//
//	ipcs [-a] [-m] [-q] [-s]
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
)

func main() {
	fs := flag.NewFlagSet("ipcs", flag.ContinueOnError)
	all := fs.Bool("a", false, "all facilities (default)")
	shm := fs.Bool("m", false, "shared memory segments")
	msg := fs.Bool("q", false, "message queues")
	sem := fs.Bool("s", false, "semaphore arrays")
	if err := fs.Parse(os.Args[1:]); err != nil || fs.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: ipcs [-a] [-m] [-q] [-s]")
		os.Exit(1)
	}
	if *all || !(*shm || *msg || *sem) {
		*shm, *msg, *sem = true, true, true
	}
	users := userNames("/etc/passwd")
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	if *msg {
		fmt.Fprint(w, "\n------ Message Queues --------\n")
		fmt.Fprintf(w, "%-10s %-10s %-10s %-10s %-12s %-12s\n", "key", "msqid", "owner", "perms", "used-bytes", "messages")
		for _, r := range table("/proc/sysvipc/msg") {
			fmt.Fprintf(w, "%-10s %-10s %-10s %-10s %-12s %-12s\n",
				key(r["key"]), r["msqid"], owner(users, r["uid"]), perms(r["perms"]), r["cbytes"], r["qnum"])
		}
		fmt.Fprintln(w)
	}
	if *shm {
		fmt.Fprint(w, "\n------ Shared Memory Segments --------\n")
		fmt.Fprintf(w, "%-10s %-10s %-10s %-10s %-10s %-10s %-12s\n", "key", "shmid", "owner", "perms", "bytes", "nattch", "status")
		for _, r := range table("/proc/sysvipc/shm") {
			fmt.Fprintf(w, "%-10s %-10s %-10s %-10s %-10s %-10s %-12s\n",
				key(r["key"]), r["shmid"], owner(users, r["uid"]), perms(r["perms"]), r["size"], r["nattch"], shmStatus(r["perms"]))
		}
		fmt.Fprintln(w)
	}
	if *sem {
		fmt.Fprint(w, "\n------ Semaphore Arrays --------\n")
		fmt.Fprintf(w, "%-10s %-10s %-10s %-10s %-10s\n", "key", "semid", "owner", "perms", "nsems")
		for _, r := range table("/proc/sysvipc/sem") {
			fmt.Fprintf(w, "%-10s %-10s %-10s %-10s %-10s\n",
				key(r["key"]), r["semid"], owner(users, r["uid"]), perms(r["perms"]), r["nsems"])
		}
		fmt.Fprintln(w)
	}
}

// table reads a /proc/sysvipc file: a header line of column names, then one
// row per object. A missing file (no SysV IPC) is an empty table.
func table(path string) []map[string]string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) == 0 {
		return nil
	}
	cols := strings.Fields(lines[0])
	var rows []map[string]string
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) < len(cols) {
			continue
		}
		r := make(map[string]string, len(cols))
		for i, c := range cols {
			r[c] = f[i]
		}
		rows = append(rows, r)
	}
	return rows
}

// key prints the signed decimal key of /proc as util-linux does: 0x%08x.
func key(s string) string {
	k, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return s
	}
	return fmt.Sprintf("0x%08x", uint32(k))
}

func perms(s string) string {
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil {
		return s
	}
	return strconv.FormatUint(m&0o777, 8)
}

func shmStatus(s string) string {
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil {
		return ""
	}
	var st []string
	if m&0o1000 != 0 { // SHM_DEST
		st = append(st, "dest")
	}
	if m&0o2000 != 0 { // SHM_LOCKED
		st = append(st, "locked")
	}
	return strings.Join(st, " ")
}

func owner(users map[string]string, uid string) string {
	if n, ok := users[uid]; ok {
		return n
	}
	return uid
}

func userNames(path string) map[string]string {
	users := map[string]string{}
	b, err := os.ReadFile(path)
	if err != nil {
		return users
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Split(l, ":")
		if len(f) >= 3 {
			if _, dup := users[f[2]]; !dup {
				users[f[2]] = f[0]
			}
		}
	}
	return users
}
