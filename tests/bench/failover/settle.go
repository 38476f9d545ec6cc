package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// nodeStatus is the part of dsrd's /v1/status answer (dsrd status --json)
// that settling looks at.
type nodeStatus struct {
	Node string `json:"node"`
	Role string `json:"role"`
	Raft struct {
		State    string `json:"state"`
		LeaderID string `json:"leader_id"`
		Term     uint64 `json:"term"`
	} `json:"raft"`
	VIPs []struct {
		Address string `json:"address"`
		Held    bool   `json:"held"`
	} `json:"vips"`
	Services []struct {
		Name  string `json:"name"`
		Up    bool   `json:"up"`
		Reals []struct {
			Address    string `json:"address"`
			Port       int    `json:"port"`
			Health     string `json:"health"`
			Weight     int    `json:"weight"`
			IPVSWeight int    `json:"ipvs_weight"`
		} `json:"reals"`
	} `json:"services"`
}

func status(ctx context.Context, socket string) (nodeStatus, error) {
	var st nodeStatus
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://dsrd/v1/status", nil)
	if err != nil {
		return st, err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("status %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// unsettled says why the cluster is not settled, or returns "" and the
// leader and term when it is.
func unsettled(ctx context.Context, sockets map[string]string) (reason, leader string, term uint64) {
	var sts []nodeStatus
	for name, sock := range sockets {
		st, err := status(ctx, sock)
		if err != nil {
			return fmt.Sprintf("%s does not answer: %v", name, err), "", 0
		}
		sts = append(sts, st)
	}
	leader, term = sts[0].Raft.LeaderID, sts[0].Raft.Term
	if leader == "" {
		return sts[0].Node + " knows no leader", "", 0
	}
	directors := map[string]bool{}
	for _, st := range sts {
		if st.Raft.LeaderID != leader || st.Raft.Term != term {
			return fmt.Sprintf("%s follows %q in term %d, %s follows %q in term %d",
				sts[0].Node, leader, term, st.Node, st.Raft.LeaderID, st.Raft.Term), "", 0
		}
		if st.Role == "director" {
			directors[st.Node] = true
		}
	}
	if !directors[leader] {
		return "the leader " + leader + " is not a director", "", 0
	}
	for _, st := range sts {
		if st.Role != "director" {
			continue
		}
		for _, v := range st.VIPs {
			if v.Held != (st.Node == leader) {
				return fmt.Sprintf("%s: VIP %s held=%v", st.Node, v.Address, v.Held), "", 0
			}
		}
		if len(st.Services) == 0 {
			return st.Node + " has no services yet", "", 0
		}
		for _, s := range st.Services {
			if !s.Up {
				return fmt.Sprintf("%s: service %s is down", st.Node, s.Name), "", 0
			}
			for _, r := range s.Reals {
				if r.Health != "up" || r.IPVSWeight != r.Weight || r.Weight <= 0 {
					return fmt.Sprintf("%s: service %s real %s:%d is %s with IPVS weight %d/%d",
						st.Node, s.Name, r.Address, r.Port, r.Health, r.IPVSWeight, r.Weight), "", 0
				}
			}
		}
	}
	return "", leader, term
}

func settleCmd(args []string) error {
	fs := flag.NewFlagSet("settle", flag.ExitOnError)
	socketsF := fs.String("socket", "", "NAME=PATH,... of every node's API socket (required)")
	timeout := fs.Duration("timeout", 60*time.Second, "give up after this long")
	stable := fs.Duration("stable", time.Second, "how long it must stay settled, same leader and term")
	every := fs.Duration("every", 500*time.Millisecond, "time between two looks (each asks every node)")
	_ = fs.Parse(args)
	sockets := map[string]string{}
	for _, kv := range strings.Split(*socketsF, ",") {
		name, path, ok := strings.Cut(kv, "=")
		if !ok || name == "" || path == "" {
			return fmt.Errorf("bad -socket entry %q: want NAME=PATH", kv)
		}
		sockets[name] = path
	}
	if len(sockets) == 0 {
		return errors.New("-socket is required")
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	var (
		since    time.Time
		leader   string
		term     uint64
		lastWhy  string
		lastTerm uint64
	)
	for {
		qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
		why, l, t := unsettled(qctx, sockets)
		qcancel()
		switch {
		case why != "":
			since, lastWhy = time.Time{}, why
		case since.IsZero() || l != leader || t != lastTerm:
			since, leader, lastTerm = time.Now(), l, t
		case time.Since(since) < *stable:
			lastWhy = "settled for less than " + stable.String()
		default:
			term = t
			fmt.Printf("leader=%s term=%d\n", leader, term)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not settled after %s: %s", *timeout, lastWhy)
		case <-time.After(*every):
		}
	}
}
