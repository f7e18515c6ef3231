package regstore

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/berth-dev/berth/internal/db"
	"github.com/berth-dev/berth/internal/eventlog"
)

// ConsoleSession is a web console session, or an unused one-time sign-in
// link (Link), known only by the SHA-256 of its secret.
type ConsoleSession struct {
	SecretSHA256 []byte
	Link         bool
	// Principal is whom the session acts for, as the front door names
	// callers (rpc.ForwardedCaller); TokenID the API token it signed in
	// with, "" for an admin certificate's.
	Principal string
	TokenID   string
	CreatedAt time.Time
	ExpiresAt time.Time
}

const consoleColumns = `secret_sha256, link, principal, token_id, created_at, expires_at`

func scanConsoleSession(row db.Scanner) (ConsoleSession, error) {
	var c ConsoleSession
	err := row.Scan(db.ScanBytes(&c.SecretSHA256), &c.Link, &c.Principal, &c.TokenID, db.ScanTime(&c.CreatedAt), db.ScanTime(&c.ExpiresAt))
	return c, err
}

// CreateConsoleSession records c, dropping the sessions and links that
// have expired by c.CreatedAt so that the table stays bounded. A link is
// an admin's credential that can be handed on, so minting one is an event
// (sign_in_link_created, actor: its principal); a session is a sign-in,
// which is not.
func (s *SQLStore) CreateConsoleSession(ctx context.Context, c ConsoleSession) error {
	d := s.DB.Dialect
	err := s.Write(ctx, func(tx *sql.Tx) ([]eventlog.Event, error) {
		if _, err := tx.ExecContext(ctx, `DELETE FROM reg_console_sessions WHERE expires_at <= $1`, d.Time(c.CreatedAt)); err != nil {
			return nil, err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO reg_console_sessions (`+consoleColumns+`) VALUES ($1, $2, $3, $4, $5, $6)`,
			c.SecretSHA256, c.Link, c.Principal, c.TokenID, d.Time(c.CreatedAt), d.Time(c.ExpiresAt))
		if err != nil || !c.Link {
			return nil, err
		}
		return []eventlog.Event{{Type: EventSignInLinkCreated, Time: db.UTC(c.CreatedAt), Details: eventlog.Details(DetailActor, c.Principal)}}, nil
	})
	if err != nil {
		return fmt.Errorf("create console session: %w", err)
	}
	return nil
}

// liveSession is the condition of a usable session or link at $2: not
// expired, and its API token (if any) neither revoked nor expired.
const liveSession = ` AND c.expires_at > $2 AND (c.token_id = '' OR EXISTS (SELECT 1 FROM reg_api_tokens t
	WHERE t.id = c.token_id AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > $2)))`

// ConsoleSession returns the live session (not a link) whose secret hashes
// to sum at now; ErrNotFound when there is none, it expired, was ended, or
// its API token was revoked or expired.
func (s *SQLStore) ConsoleSession(ctx context.Context, sum []byte, now time.Time) (ConsoleSession, error) {
	c, err := scanConsoleSession(s.DB.QueryRowContext(ctx, `SELECT `+consoleColumns+` FROM reg_console_sessions c
		WHERE c.secret_sha256 = $1 AND NOT c.link`+liveSession, sum, s.DB.Dialect.Time(now)))
	return db.Result(c, db.Found(err, ErrNotFound), "get console session")
}

// UseConsoleLink spends the live link whose secret hashes to sum at
// session.CreatedAt and records session for the link's principal in the
// same transaction, returning it. A link is spent once: of replicas racing
// to spend it, one gets it and the others ErrNotFound, as for a link that
// is unknown, expired, or whose API token was revoked.
func (s *SQLStore) UseConsoleLink(ctx context.Context, sum []byte, session ConsoleSession) (ConsoleSession, error) {
	d := s.DB.Dialect
	err := s.DB.Tx(ctx, func(tx *sql.Tx) error {
		// DELETE … RETURNING locks the row: a second spender waits and then
		// finds it gone.
		var link ConsoleSession
		err := tx.QueryRowContext(ctx, `DELETE FROM reg_console_sessions AS c WHERE c.secret_sha256 = $1 AND c.link`+liveSession+`
			RETURNING principal, token_id`, sum, d.Time(session.CreatedAt)).Scan(&link.Principal, &link.TokenID)
		if err != nil {
			return db.Found(err, ErrNotFound)
		}
		session.Link, session.Principal, session.TokenID = false, link.Principal, link.TokenID
		_, err = tx.ExecContext(ctx, `INSERT INTO reg_console_sessions (`+consoleColumns+`) VALUES ($1, $2, $3, $4, $5, $6)`,
			session.SecretSHA256, false, session.Principal, session.TokenID, d.Time(session.CreatedAt), d.Time(session.ExpiresAt))
		return err
	})
	return db.Result(session, err, "use console sign-in link")
}

// EndConsoleSession forgets the session whose secret hashes to sum; ending
// one that is gone is not an error.
func (s *SQLStore) EndConsoleSession(ctx context.Context, sum []byte) error {
	_, err := s.DB.ExecContext(ctx, `DELETE FROM reg_console_sessions WHERE secret_sha256 = $1 AND NOT link`, sum)
	if err != nil {
		return fmt.Errorf("end console session: %w", err)
	}
	return nil
}
