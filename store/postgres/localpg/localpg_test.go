package localpg

import (
	"net"
	"strconv"
	"testing"
)

// TestFreePorts checks that the ports are distinct, bindable, and below the
// kernel's ephemeral range, where an outgoing connection cannot take them.
func TestFreePorts(t *testing.T) {
	ports, err := FreePorts("127.0.0.1", 6)
	if err != nil {
		t.Fatal(err)
	}
	low := ephemeralLow()
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Fatalf("port %d twice in %v", p, ports)
		}
		seen[p] = true
		if low > 11000 && p >= low {
			t.Errorf("port %d is in the ephemeral range (from %d)", p, low)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d: %v", p, err)
		}
		_ = l.Close()
	}
}
