// Package bgp is dsrd's embedded BGP speaker: it announces a director's VIPs
// as host routes (/32, /128) with itself as the next hop to the configured
// routers, which spread the VIPs' flows over the directors by ECMP.
//
// The speaker is an embedded gobgp (github.com/osrg/gobgp/v4) server that
// never listens: it dials out to each router, imports nothing the routers
// send (every received route is rejected, at most 100 of them are held
// before the session is cut), and runs BFD per router when configured. A
// drain re-announces the routes with the GRACEFUL_SHUTDOWN community
// (RFC 8326) and a worse MED before they are withdrawn.
//
// What routers send is parsed by gobgp in its own goroutines: the speaker
// bounds what it keeps (max-prefix) and imports none of it, but a panic in
// gobgp's parser would not be the speaker's to recover.
//
// The package owns its input type, Config; it does not know dsrd's
// configuration file, which internal/director translates.
package bgp
