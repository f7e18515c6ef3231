// Package compose tests the Docker Compose deployment (deploy/compose.yaml)
// on a real Docker engine: images, health, admin access from the host, the
// demo agent's reboots, a registration outage, down/up with kept volumes,
// and every service restarted alone.
//
// The tests are behind the build tag "compose" so that go test ./... stays
// fast. Run them with
//
//	make compose-test
//
// which builds the images (berth:dev, berth-postgres:15) first and checks
// that deploy/compose.yaml loads with both Compose v1 and v2, or directly:
//
//	BERTH_IMAGE=berth:dev BERTH_POSTGRES_IMAGE=berth-postgres:15 go test -tags compose -v ./tests/compose/
//
// Without a Docker engine or a compose command they fail: they never skip.
// BERTH_COMPOSE overrides the compose command ("docker compose" when the
// plugin is there, else docker-compose). BERTH_COMPOSE_KEEP=1 leaves the
// project up after the test for inspection.
package compose
