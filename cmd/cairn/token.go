package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/cairndb/cairn/auth"
	"github.com/spf13/cobra"
)

func newTokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Mint API tokens",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newTokenIssueCmd())
	return cmd
}

func newTokenIssueCmd() *cobra.Command {
	var role, secret, secretFile, subject, issuer, audience string
	var namespaces []string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "issue",
		Short: "Mint an HS256 token signed with the cluster's HMAC secret",
		Long: `Mint an HS256 token signed with the cluster's HMAC secret and print it.

The token grants a role (viewer: reads and watches; contributor: also
writes and transactions; admin: everything, including namespaces and the
cluster) over namespaces ('*' for all of them). The secret comes from
--auth-secret-file, --auth-secret or CAIRN_AUTH_SECRET, as for cairn serve.`,
		Example: `  cairn token issue --auth-secret-file /etc/cairn/auth-secret --role admin --namespaces '*' --ttl 1h
  cairn token issue --auth-secret-file /etc/cairn/auth-secret --role viewer --namespaces chat,billing --ttl 720h`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd.Flags()); err != nil {
				return err
			}
			key, err := readSecret(secret, secretFile)
			if err != nil {
				return err
			}
			if key == nil {
				return errors.New("no HMAC secret: give --auth-secret-file, --auth-secret or CAIRN_AUTH_SECRET")
			}
			r, err := auth.ParseRole(role)
			if err != nil {
				return fmt.Errorf("--role %q: use viewer, contributor or admin", role)
			}
			tok, err := auth.MintHS256(key, auth.Grant{
				Role: r, Namespaces: namespaces, TTL: ttl, Subject: subject, Issuer: issuer, Audience: audience,
			})
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), tok)
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&role, "role", "", "viewer, contributor or admin (required)")
	fl.StringSliceVar(&namespaces, "namespaces", nil, "namespaces the token grants, comma-separated; '*' for all")
	fl.DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token is valid")
	fl.StringVar(&secret, "auth-secret", "", "the HMAC secret (prefer CAIRN_AUTH_SECRET or --auth-secret-file)")
	fl.StringVar(&secretFile, "auth-secret-file", "", "file holding the HMAC secret")
	fl.StringVar(&subject, "subject", "", "sub claim: who the token is for")
	fl.StringVar(&issuer, "issuer", "", "iss claim (when the cluster checks --auth-issuer)")
	fl.StringVar(&audience, "audience", "", "aud claim (when the cluster checks --auth-audience)")
	return cmd
}
