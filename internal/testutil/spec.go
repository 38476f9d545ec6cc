package testutil

import (
	"fmt"
	"testing"

	"github.com/dsrd/dsrd/internal/config"
)

// WebDirector returns a director configuration as the file parser gives it
// (defaults filled in, validated): one TCP service "web" on port 80 of vip,
// scheduled by mh, with an HTTP check and two reals, 198.51.100.10 and
// .11, of the given weight. Tests that replicate a spec take its shared
// part (clusterspec.FromDirector).
func WebDirector(t testing.TB, vip string, weight int) *config.Director {
	t.Helper()
	doc := fmt.Sprintf(`node: {id: d1, interface: eth0}
cluster: {bind: "127.0.0.1:7946", peers: [d1@127.0.0.1:7946]}
ipvs: {tcp_timeout: 900s, sloppy_tcp: true}
vips: [{address: %[1]s, announce: {count: 3, interval: 1100ms}}]
services:
  - name: web
    vip: %[1]s
    port: 80
    protocol: tcp
    scheduler: mh
    health_check: {type: http, path: /healthz, interval: 1s, timeout: 500ms}
    reals: [{address: 198.51.100.10, weight: %[2]d}, {address: 198.51.100.11, weight: %[2]d}]
`, vip, weight)
	d, err := config.ParseDirector("test.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return d
}
