package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
)

// Neighbour is one entry of a neighbour (ARP/NDP) table.
type Neighbour struct {
	Dst    string   `json:"dst"`
	Dev    string   `json:"dev"`
	LLAddr string   `json:"lladdr"`
	State  []string `json:"state"`
}

// Neighbours lists h's neighbour entries for addr (ip -j neigh show to ADDR).
func Neighbours(ctx context.Context, h Host, addr netip.Addr) ([]Neighbour, error) {
	out, err := IP(ctx, h, "-j", "neigh", "show", "to", addr.String())
	if err != nil {
		return nil, err
	}
	return ParseNeighbours(out)
}

// ParseNeighbours parses the output of ip -j neigh.
func ParseNeighbours(out string) ([]Neighbour, error) {
	var n []Neighbour
	if strings.TrimSpace(out) == "" {
		return nil, nil
	}
	if err := json.Unmarshal([]byte(out), &n); err != nil {
		return nil, fmt.Errorf("parse ip -j neigh: %w", err)
	}
	return n, nil
}
