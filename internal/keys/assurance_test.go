package keys

import (
	"strings"
	"testing"
)

func TestAssuranceOrder(t *testing.T) {
	all := Assurances()
	for i := 1; i < len(all); i++ {
		if all[i-1].Rank() <= all[i].Rank() {
			t.Errorf("%s ranks %d, not above %s (%d)", all[i-1], all[i-1].Rank(), all[i], all[i].Rank())
		}
	}
	if !AssuranceTPM.AtLeast(AssuranceSeedFile) || AssuranceSiteSecret.AtLeast(AssuranceFile) || !AssuranceFile.AtLeast(AssuranceFile) {
		t.Error("AtLeast disagrees with the documented order tpm > seed-file > file > site-secret")
	}
	if Assurance("").AtLeast(AssuranceSiteSecret) {
		t.Error("an unknown source ranks at least site-secret")
	}
}

func TestParseAssurance(t *testing.T) {
	for _, a := range Assurances() {
		got, err := ParseAssurance(string(a))
		if err != nil || got != a {
			t.Errorf("ParseAssurance(%q) = %q, %v", a, got, err)
		}
	}
	for _, bad := range []string{"", "TPM", " tpm", "seed", "seed_file", "disk"} {
		if _, err := ParseAssurance(bad); err == nil || !strings.Contains(err.Error(), "unknown identity source") {
			t.Errorf("ParseAssurance(%q) error = %v, want unknown identity source", bad, err)
		}
	}
}

func TestConfigAssurance(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want Assurance
	}{
		{Config{Kind: KindSeed, SeedFile: "/s"}, AssuranceSeedFile},
		{Config{Kind: KindSeed, SiteSecretFile: "/x"}, AssuranceSiteSecret},
		{Config{SiteSecretFile: "/x"}, AssuranceSiteSecret},
		{Config{Kind: KindFile}, AssuranceFile},
		{Config{Kind: KindTPM}, AssuranceTPM},
	} {
		got, err := tc.cfg.Assurance()
		if err != nil || got != tc.want {
			t.Errorf("%+v: Assurance() = %q, %v; want %q", tc.cfg, got, err, tc.want)
		}
	}
	if _, err := (Config{Kind: "disk"}).Assurance(); err == nil {
		t.Error("an unknown kind has an assurance")
	}
}
