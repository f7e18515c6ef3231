package apitoken

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/internal/mtls"
	berthv1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Authenticator is how a token is checked: by a Checker where the store
// is, by a Client elsewhere (the front door of a split deployment, a web
// console). Refusals are ErrMalformed, ErrUnknown, ErrRevoked or
// ErrExpired.
type Authenticator interface {
	Authenticate(ctx context.Context, bearer string) (Principal, error)
}

var (
	_ Authenticator = (*Checker)(nil)
	_ Authenticator = (*Client)(nil)
)

// Client checks tokens through the registration service's
// AuthenticateAPIToken, over a connection made with the api service's
// certificate (only that identity may call it).
type Client struct{ c berthv1.APITokenServiceClient }

// NewClient returns a Client on conn.
func NewClient(conn grpc.ClientConnInterface) *Client {
	return &Client{c: berthv1.NewAPITokenServiceClient(conn)}
}

// refusals are the registration service's answers to a refused token.
var refusals = map[string]error{
	MsgMalformed: ErrMalformed, MsgUnknown: ErrUnknown, MsgRevoked: ErrRevoked, MsgExpired: ErrExpired,
}

// Authenticate asks the registration service whom bearer names. A refused
// token is one of the package's errors; any other failure is the call's
// gRPC status (Unavailable when the service is down).
func (c *Client) Authenticate(ctx context.Context, bearer string) (Principal, error) {
	resp, err := c.c.AuthenticateAPIToken(ctx, &berthv1.AuthenticateAPITokenRequest{Token: bearer})
	if err != nil {
		if st := status.Convert(err); st.Code() == codes.Unauthenticated {
			if known, ok := refusals[st.Message()]; ok {
				return Principal{}, known
			}
		}
		return Principal{}, err
	}
	role, ok := mtls.ParseRole(resp.GetRole())
	if !ok || !IsID(resp.GetId()) {
		return Principal{}, fmt.Errorf("authenticate API token: the registration service answered an unknown role %q or ID", resp.GetRole())
	}
	return Principal{ID: resp.GetId(), Name: resp.GetName(), Role: role}, nil
}
