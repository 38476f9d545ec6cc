package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    config
		wantErr string
	}{
		{
			name: "repeated and comma lists",
			args: []string{"--name", "rs1", "--tcp", ":9000,:9001", "--tcp", "[::1]:9002", "--http", ":80", "--udp", ":53, :5353"},
			want: config{name: "rs1", tcp: []string{":9000", ":9001", "[::1]:9002"}, http: []string{":80"}, udp: []string{":53", ":5353"}},
		},
		{name: "no name", args: []string{"--tcp", ":1"}, wantErr: "--name is required"},
		{name: "no listener", args: []string{"--name", "x"}, wantErr: "nothing to listen on"},
		{name: "empty list item", args: []string{"--name", "x", "--tcp", ":1,"}, wantErr: "empty address"},
		{name: "stray argument", args: []string{"--name", "x", "--tcp", ":1", "extra"}, wantErr: "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseFlags(tt.args, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseFlags(%q) error = %v, want one containing %q", tt.args, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseFlags(%q): %v", tt.args, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseFlags(%q) = %+v, want %+v", tt.args, got, tt.want)
			}
		})
	}
}

// startBackend runs the backend on loopback ports chosen by the kernel and
// returns its bound addresses by protocol; the backend stops with the test.
func startBackend(t *testing.T, name string) map[string]string {
	t.Helper()
	return startBackendArgs(t, name, "--tcp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--udp", "127.0.0.1:0")
}

// startBackendArgs is startBackend with the backend's listeners.
func startBackendArgs(t *testing.T, name string, listeners ...string) map[string]string {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "ready")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var stderr bytes.Buffer
	go func() {
		done <- run(ctx, append([]string{"--name", name, "--ready-file", ready}, listeners...), &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("backend returned %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("backend did not stop within 5s of its context's end")
		}
	})

	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(ready)
		if err == nil {
			addrs := map[string]string{}
			for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				proto, addr, _ := strings.Cut(line, " ")
				addrs[proto] = addr
			}
			return addrs
		}
		select {
		case err := <-done:
			t.Fatalf("backend ended before it was ready: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ready file within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTCPGreetsAndEchoes(t *testing.T) {
	addrs := startBackend(t, "rs1")
	c, err := net.DialTimeout("tcp", addrs["tcp"], 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	if got, err := r.ReadString('\n'); err != nil || got != "rs1\n" {
		t.Fatalf("greeting = %q, %v; want %q", got, err, "rs1\n")
	}
	for _, line := range []string{"hello", "second line"} {
		if _, err := io.WriteString(c, line+"\n"); err != nil {
			t.Fatal(err)
		}
		if got, err := r.ReadString('\n'); err != nil || got != line+"\n" {
			t.Fatalf("echo = %q, %v; want %q", got, err, line+"\n")
		}
	}
}

func TestHTTP(t *testing.T) {
	addrs := startBackend(t, "rs2")
	client := &http.Client{Timeout: 5 * time.Second}
	tests := []struct {
		path       string
		wantStatus int
		wantBody   string
	}{
		{"/", http.StatusOK, "rs2\n"},
		{"/healthz", http.StatusOK, "ok\n"},
		{"/nothing", http.StatusNotFound, ""},
	}
	for _, tt := range tests {
		resp, err := client.Get("http://" + addrs["http"] + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != tt.wantStatus {
			t.Errorf("GET %s: status %d, want %d", tt.path, resp.StatusCode, tt.wantStatus)
		}
		if tt.wantBody != "" && string(body) != tt.wantBody {
			t.Errorf("GET %s: body %q, want %q", tt.path, body, tt.wantBody)
		}
		if tt.path == "/" {
			if host, _, err := net.SplitHostPort(resp.Header.Get("X-Client-Addr")); err != nil || host != "127.0.0.1" {
				t.Errorf("GET /: X-Client-Addr %q, want 127.0.0.1:PORT", resp.Header.Get("X-Client-Addr"))
			}
		}
	}
}

func TestUDP(t *testing.T) {
	addrs := startBackend(t, "rs3")
	c, err := net.Dial("udp", addrs["udp"])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("anything")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(buf[:n]); got != "rs3\n" {
		t.Errorf("udp reply %q, want %q", got, "rs3\n")
	}
}

// TestUDPAnswersFromTheAddressAsked: a datagram sent to another local
// address than the one the routing table would pick as the reply's source
// (as a VIP on lo behind a direct-routing director is) is answered from
// the address it was sent to, so a connected client accepts it.
func TestUDPAnswersFromTheAddressAsked(t *testing.T) {
	addrs := startBackendArgs(t, "rs2", "--udp", ":0") // the wildcard, as in the lab
	_, port, err := net.SplitHostPort(addrs["udp"])
	if err != nil {
		t.Fatal(err)
	}
	// 127.0.0.2 is local (127.0.0.0/8 on lo); the route back to the
	// client, 127.0.0.1, would pick 127.0.0.1 as the source.
	c, err := net.Dial("udp", net.JoinHostPort("127.0.0.2", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("anything")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no answer from 127.0.0.2 (an answer from another source is dropped): %v", err)
	}
	if got := string(buf[:n]); got != "rs2\n" {
		t.Errorf("udp reply %q, want %q", got, "rs2\n")
	}
}

// TestStopClosesConnections checks that an open TCP connection does not keep
// the backend from stopping: the lab stops backends under long-lived tests.
func TestStopClosesConnections(t *testing.T) {
	ready := filepath.Join(t.TempDir(), "ready")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--name", "x", "--tcp", "127.0.0.1:0", "--ready-file", ready}, io.Discard)
	}()
	var addr string
	deadline := time.Now().Add(5 * time.Second)
	for addr == "" {
		if b, err := os.ReadFile(ready); err == nil {
			_, addr, _ = strings.Cut(strings.TrimSpace(string(b)), " ")
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no ready file within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("backend did not stop within 5s with a connection open")
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("connection still open after the backend stopped")
	}
}

func TestListenErrorReleasesEverything(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// The HTTP address is taken: the TCP listener bound before it must be released.
	err = run(context.Background(), []string{"--name", "x", "--tcp", "127.0.0.1:0", "--http", l.Addr().String()}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "listen http") {
		t.Fatalf("run with a taken address: %v, want a listen http error", err)
	}
}
