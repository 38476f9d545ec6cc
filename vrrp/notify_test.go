package vrrp

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/testutil"
)

// writeScript writes an executable shell script into dir.
func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func readLines(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// The scripts of each transition run in order, the state's own first then
// the generic one, argv as given and no shell, with the state, the reason
// and the VIPs in the environment.
func TestNotifyScriptsRunWithEnvironment(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	script := writeScript(t, dir, "notify.sh",
		`printf '%s state=%s prev=%s reason=%s iface=%s vips=%s\n' "$1" "$DSRD_STATE" "$DSRD_PREVIOUS_STATE" "$DSRD_REASON" "$DSRD_INTERFACE" "$DSRD_VIPS" >> "$2"`+"\n")
	k := NewFakeKernel("eth0")
	log, _ := testLogger(t)
	o, err := NewOwner([]VIP{vip("203.0.113.10", "eth0", once()), vip("2001:db8::100", "eth0", once())}, k, newRecorder().announce, log)
	if err != nil {
		t.Fatal(err)
	}
	m := NewMachine(o, MachineOptions{Notify: NotifyScripts{
		Master: []string{script, "master", out},
		Backup: []string{script, "backup", out},
		Fault:  []string{script, "fault", out},
		Any:    []string{script, "any", out},
	}})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	testutil.WaitFor(t, 20*time.Second, "BACKUP", func() (bool, string) { return m.State() == StateBackup, "not yet" })
	m.SetLeader(true)
	testutil.WaitFor(t, 20*time.Second, "MASTER", func() (bool, string) { return m.State() == StateMaster, "not yet" })
	setLink(k, "eth0", LinkDown)
	testutil.WaitFor(t, 20*time.Second, "six script runs", func() (bool, string) { return len(readLines(out)) == 6, "not yet" })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	const vips = "vips=203.0.113.10 2001:db8::100"
	wantLines(t, "script runs", readLines(out),
		"backup state=BACKUP prev=INIT reason=start iface= "+vips,
		"any state=BACKUP prev=INIT reason=start iface= "+vips,
		"master state=MASTER prev=BACKUP reason=leader iface= "+vips,
		"any state=MASTER prev=BACKUP reason=leader iface= "+vips,
		"fault state=FAULT prev=MASTER reason=interface-down iface=eth0 "+vips,
		"any state=FAULT prev=MASTER reason=interface-down iface=eth0 "+vips,
	)
}

func runNotifier(t *testing.T, s NotifyScripts) (*notifier, *testutil.SyncBuffer, func()) {
	t.Helper()
	log, buf := testLogger(t)
	n := newNotifier(s, log)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); n.run(ctx) }()
	return n, buf, func() { cancel(); <-done }
}

// A script that outlives its timeout is killed, with what it started, and
// the next one runs.
func TestNotifyTimeout(t *testing.T) {
	dir := t.TempDir()
	started := filepath.Join(dir, "started")
	out := filepath.Join(dir, "out")
	hang := writeScript(t, dir, "hang.sh", "touch \""+started+"\"\nsleep 300 &\nsleep 300\n")
	next := writeScript(t, dir, "next.sh", "echo ran >> \""+out+"\"\n")
	n, buf, stop := runNotifier(t, NotifyScripts{
		Master:  []string{hang},
		Backup:  []string{next},
		Timeout: 200 * time.Millisecond,
	})
	defer stop()
	n.enqueue(Transition{From: StateBackup, To: StateMaster, Reason: ReasonLeader})
	n.enqueue(Transition{From: StateMaster, To: StateBackup, Reason: ReasonNotLeader})
	testutil.WaitFor(t, 20*time.Second, "the next script", func() (bool, string) { return len(readLines(out)) == 1, "not yet" })
	if !strings.Contains(buf.String(), "notify script timed out and was killed") {
		t.Fatalf("no timeout logged:\n%s", buf.String())
	}
	if _, err := os.Stat(started); err != nil {
		t.Fatalf("the hanging script never started: %v", err)
	}
}

// Transitions beyond the queue are dropped with a log; enqueue never
// blocks.
func TestNotifyQueueFull(t *testing.T) {
	dir := t.TempDir()
	started := filepath.Join(dir, "started")
	hang := writeScript(t, dir, "hang.sh", "touch \""+started+"\"\nexec sleep 300\n")
	n, buf, stop := runNotifier(t, NotifyScripts{Master: []string{hang}, Queue: 1, Timeout: time.Minute})
	tr := Transition{From: StateBackup, To: StateMaster, Reason: ReasonLeader}
	n.enqueue(tr)
	testutil.WaitFor(t, 20*time.Second, "the first script", func() (bool, string) { _, err := os.Stat(started); return err == nil, "not yet" })
	n.enqueue(tr) // queued
	n.enqueue(tr) // dropped
	if got := strings.Count(buf.String(), "notify queue full"); got != 1 {
		t.Fatalf("%d drops logged, want 1:\n%s", got, buf.String())
	}
	// Stopping kills the running script and returns.
	stop()
	if !strings.Contains(buf.String(), "notify script killed: shutting down") {
		t.Fatalf("running script not killed on stop:\n%s", buf.String())
	}
}

// Without a script for a state nothing is queued.
func TestNotifyNothingToRun(t *testing.T) {
	log, _ := testLogger(t)
	n := newNotifier(NotifyScripts{Master: []string{"/bin/true"}}, log)
	n.enqueue(Transition{To: StateBackup})
	if len(n.queue) != 0 {
		t.Fatal("a transition without scripts was queued")
	}
	n.enqueue(Transition{To: StateMaster})
	if len(n.queue) != 1 {
		t.Fatal("a transition with a script was not queued")
	}
}

func TestLimitedBuffer(t *testing.T) {
	b := &limitedBuffer{max: 5}
	for _, s := range []string{"abc", "defg", "hij"} {
		if n, err := b.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if got := b.String(); got != "abcde [truncated]" {
		t.Fatalf("got %q", got)
	}
}

// A notify script runs as root with none of dsrd's environment but PATH:
// only the DSRD_* variables of its transition, in /.
func TestNotifyScriptEnvironmentIsMinimal(t *testing.T) {
	t.Setenv("DSRD_TEST_SECRET", "must not leak")
	t.Setenv("PATH", "/usr/bin:/bin")
	dir := t.TempDir()
	out := filepath.Join(dir, "env")
	script := writeScript(t, dir, "env.sh", `pwd > "$1.pwd"; /usr/bin/env > "$1.tmp"; mv "$1.tmp" "$1"`+"\n")
	n, _, stop := runNotifier(t, NotifyScripts{Master: []string{script, out}})
	defer stop()
	n.enqueue(Transition{From: StateBackup, To: StateMaster, Reason: "leader", VIPs: []VIP{vip("203.0.113.10", "eth0", once())}})
	testutil.WaitFor(t, 20*time.Second, "the script's environment", func() (bool, string) { return len(readLines(out)) > 0, "not yet" })

	var got []string
	for _, kv := range readLines(out) {
		switch name, _, _ := strings.Cut(kv, "="); name {
		case "PWD", "OLDPWD", "SHLVL", "_": // the shell's own
		default:
			got = append(got, kv)
		}
	}
	slices.Sort(got)
	wantLines(t, "environment", got,
		"DSRD_INTERFACE=",
		"DSRD_PREVIOUS_STATE=BACKUP",
		"DSRD_REASON=leader",
		"DSRD_STATE=MASTER",
		"DSRD_VIPS=203.0.113.10",
		"PATH=/usr/bin:/bin",
	)
	wantLines(t, "working directory", readLines(out+".pwd"), "/")
}
