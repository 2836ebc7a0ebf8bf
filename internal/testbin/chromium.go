package testbin

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// ChromiumPath is Debian's Chromium, which .ci/run installs.
const ChromiumPath = "/usr/bin/chromium"

// StartChromium starts one headless Chromium for the test, driven through
// chromedp, that trusts exactly the given server keys (the DER
// SubjectPublicKeyInfo of each TLS leaf): a targeted trust instead of
// --ignore-certificate-errors. It skips the test when Chromium is not
// installed. The returned context is the browser; open tabs with
// ChromiumTab.
func StartChromium(t testing.TB, spkis ...[]byte) context.Context {
	t.Helper()
	if _, err := os.Stat(ChromiumPath); err != nil {
		t.Skipf("%s not found (apt-get install chromium; .ci/run installs it): %v", ChromiumPath, err)
	}
	var hashes []string
	for _, s := range spkis {
		sum := sha256.Sum256(s)
		hashes = append(hashes, base64.StdEncoding.EncodeToString(sum[:]))
	}
	out := &strings.Builder{}
	actx, cancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(ChromiumPath),
		// The flags FIELD-NOTES.md gives for root on these machines.
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		// Chromium's singleton socket goes to a directory in TMPDIR that
		// a killed browser leaves behind: keep it in the test's.
		chromedp.Env("TMPDIR="+t.TempDir()),
		chromedp.Flag("ignore-certificate-errors-spki-list", strings.Join(hashes, ",")),
		chromedp.CombinedOutput(out),
	)
	t.Cleanup(cancel)
	bctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	if err := chromedp.Do(bctx); err != nil { // starts the browser, no timeout
		t.Fatalf("starting %s: %v\n%s", ChromiumPath, err, out)
	}
	return bctx
}

// ChromiumTab opens a tab with its own cookies (a fresh browser context)
// and a 20 s deadline for its actions.
func ChromiumTab(t testing.TB, bctx context.Context) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(bctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	ctx, cancel = context.WithTimeout(ctx, 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
