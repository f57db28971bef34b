package campaign

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/otaport/otaport/core/cloud"
	"github.com/otaport/otaport/fleet/store"
)

// Statements returns the release statement of each product that has
// devices, issued at now and valid for ttl, signed with the order key: for
// each board and module its devices have, the version of the newest
// campaign for it that was not canceled. Without an order key there is
// nothing to sign and it returns none.
func (s *Service) Statements(now time.Time, ttl time.Duration) ([]cloud.Statement, error) {
	if s.cfg.OrderKey == nil {
		return nil, nil
	}
	devs, err := s.cfg.Store.Devices()
	if err != nil {
		return nil, fmt.Errorf("release statements: %w", err)
	}
	camps, err := s.cfg.Store.Campaigns()
	if err != nil {
		return nil, fmt.Errorf("release statements: %w", err)
	}
	type target struct{ board, module string }
	current := map[target]string{}
	newest := map[target]uint64{}
	for _, c := range camps {
		if c.State == store.CampaignCanceled {
			continue
		}
		for _, img := range c.Images {
			k := target{img.Board, cloud.ModuleName(c.Module)}
			if c.ID >= newest[k] {
				newest[k], current[k] = c.ID, img.Version
			}
		}
	}
	products := map[string][]cloud.Release{}
	for _, d := range devs {
		rs := products[d.ProductKey]
		for _, m := range d.ModuleList() {
			k := target{m.Board, cloud.ModuleName(m.Name)}
			v, ok := current[k]
			r := cloud.Release{Board: k.board, Module: cloud.ModuleField(k.module), Version: v}
			if ok && !slices.Contains(rs, r) {
				rs = append(rs, r)
			}
		}
		products[d.ProductKey] = rs
	}
	var out []cloud.Statement
	for _, pk := range slices.Sorted(maps.Keys(products)) {
		rs := products[pk]
		slices.SortFunc(rs, func(a, b cloud.Release) int {
			return cmp.Or(strings.Compare(a.Board, b.Board), strings.Compare(a.Module, b.Module))
		})
		st := cloud.Statement{Product: pk, Issued: now.UnixMilli(), Expires: now.Add(ttl).Unix(), Releases: rs}
		cloud.SignStatement(&st, s.cfg.OrderKey)
		out = append(out, st)
	}
	return out, nil
}

// PublishStatements publishes each product's statement (Statements) on its
// release topic through pub.
func (s *Service) PublishStatements(ctx context.Context, pub Publisher, now time.Time, ttl time.Duration) error {
	sts, err := s.Statements(now, ttl)
	if err != nil {
		return err
	}
	var errs []error
	for _, st := range sts {
		payload, err := json.Marshal(st)
		if err == nil {
			err = pub.Publish(ctx, cloud.ReleaseTopic(st.Product), payload)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("release statement of %s: %w", st.Product, err))
		}
	}
	return errors.Join(errs...)
}
