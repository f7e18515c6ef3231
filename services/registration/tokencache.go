package registration

import (
	"maps"
	"sync"

	"github.com/berth-dev/berth/internal/store/regstore"
)

// tokenCacheMax bounds the bootstrap tokens checkToken keeps; a fleet
// registers with a handful.
const tokenCacheMax = 1024

// tokenCache keeps the bootstrap tokens checkToken read, so that a fleet
// registering with one token reads it once per replica rather than once
// per node. It is sound without expiry: what registration takes from a
// token (its secret's hash, expiry, labels, approval) never changes, and
// what does only ever turns against it (revoked, uses running out), so a
// refusal read from the cache is always right. An acceptance may be stale;
// the registering write spends the token only if it is still active
// (regstore's conditional update), and a token it refuses is dropped.
type tokenCache struct {
	mu sync.Mutex
	m  map[string]regstore.Token
}

func (c *tokenCache) get(id string) (regstore.Token, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.m[id]
	t.Labels = maps.Clone(t.Labels) // each node gets a map of its own
	return t, ok
}

func (c *tokenCache) put(t regstore.Token) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= tokenCacheMax {
		c.m = make(map[string]regstore.Token)
	}
	c.m[t.ID] = t
}

func (c *tokenCache) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, id)
}
