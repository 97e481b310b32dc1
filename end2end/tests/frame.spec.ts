// Signing in and out, and the smaller pages: overview, policies, integration, theme.
import { ADMIN, createKeyDirectly, en, expect, hydrated, navigate, open, signIn, test, unique } from "./support/app";

test("a visitor without a session is sent to sign in, and a wrong password says so", async ({ page, errors }, testInfo) => {
  await page.goto("/devices");
  await page.waitForURL((url) => url.pathname === "/login");
  await hydrated(page);
  await expect(page.getByRole("heading", { level: 1 })).toHaveText(en.login.title);

  // A made-up account, so that the admin's own sign-in throttle is never touched. The refusal
  // is a client error (the server function answers 400 with the code; 401 would do as well).
  errors.allow(400, /\/api\/auth\/login$/);
  errors.allow(401, /\/api\/auth\/login$/);
  await page.locator("#login-email").fill(`${unique(testInfo, "nobody")}@keyguard.test`);
  await page.locator("#login-password").fill("not-the-password");
  await page.getByTestId("login-submit").click();
  const error = page.getByTestId("error");
  await expect(error).toHaveAttribute("data-code", "invalid_credentials");
  await expect(error).toHaveText(en.errors.invalid_credentials);
  await expect(page).toHaveURL(/\/login$/);
});

test("sign in, use the overview, and sign out", async ({ page, errors }) => {
  await signIn(page, ADMIN);
  await expect(page.getByRole("heading", { level: 1 })).toHaveText(en.overview.title);
  await expect(page.getByTestId("role")).toHaveText(en.roles.admin);
  for (const stat of ["stat-devices", "stat-pending", "stat-requests", "stat-rejections"]) {
    await expect(page.getByTestId(stat)).toHaveText(/\d/);
  }
  await expect(page.getByTestId("range-day")).toHaveAttribute("aria-pressed", "true");
  await page.getByTestId("range-week").click();
  await expect(page.getByTestId("range-week")).toHaveAttribute("aria-pressed", "true");
  await expect(page.getByTestId("range-day")).toHaveAttribute("aria-pressed", "false");
  await expect(page.getByTestId("stat-requests")).toHaveText(/\d/);

  // From an unknown address home by its link: the frame is then built in the browser, which
  // asks the server who is signed in (a page load gets that with the page).
  errors.allow(404, /\/no-such-page$/);
  await open(page, "/no-such-page");
  await expect(page.getByRole("heading", { level: 1 })).toHaveText(en.not_found.title);
  await page.getByRole("link", { name: en.not_found.home }).click();
  await expect(page.getByRole("heading", { level: 1 })).toHaveText(en.overview.title);
  await expect(page.getByTestId("role")).toHaveText(en.roles.admin);
  await expect(page.getByTestId("nav-users")).toBeVisible();

  // A signed-in visitor of the sign-in page goes home.
  await open(page, "/login");
  await page.waitForURL((url) => url.pathname === "/");

  await hydrated(page);
  await page.getByTestId("sign-out").click();
  await page.waitForURL((url) => url.pathname === "/login");
  await page.goto("/");
  await page.waitForURL((url) => url.pathname === "/login");
});

test("the theme switch changes the theme and keeps it", async ({ page }) => {
  await signIn(page, ADMIN);
  const app = page.locator(".app");
  await page.getByTestId("theme-switch").selectOption("dark");
  await expect(app).toHaveAttribute("data-theme", "dark");
  const background = await app.evaluate((a) => getComputedStyle(a).backgroundColor);
  await page.getByTestId("theme-switch").selectOption("light");
  await expect(app).toHaveAttribute("data-theme", "light");
  await expect.poll(() => app.evaluate((a) => getComputedStyle(a).backgroundColor)).not.toBe(background);
  await page.getByTestId("theme-switch").selectOption("dark");
  await expect(app).toHaveAttribute("data-theme", "dark");
  await page.reload();
  await expect(app).toHaveAttribute("data-theme", "dark");
  await hydrated(page);
  await expect(page.getByTestId("theme-switch")).toHaveValue("dark");
});

test("policies: a wrong network is named, a key's override is saved", async ({ page }, testInfo) => {
  await signIn(page, ADMIN);
  const key = await createKeyDirectly(page, unique(testInfo, "policy-key"));
  await navigate(page, "nav-policies", en.policies.title);
  await page.getByTestId("policy-scope").selectOption(`api_key:${key.id}`);

  const ips = page.getByTestId("policy-ips");
  await ips.fill("10.0.0.0/8\n10.0.0.0/33\nexample.com");
  await expect(page.getByTestId("policy-ips-error")).toContainText("10.0.0.0/33");
  await expect(page.getByTestId("policy-ips-error")).toContainText("example.com");
  await ips.fill("10.0.0.0/8\n127.0.0.1\n::1");
  await expect(page.getByTestId("policy-ips-error")).toBeEmpty();

  await page.getByTestId("policy-rpm").fill("600");
  await page.getByTestId("policy-save").click();
  await expect(page.getByTestId("policy-form").getByRole("status")).toHaveText(en.common.saved);

  await page.reload();
  await hydrated(page);
  await page.getByTestId("policy-scope").selectOption(`api_key:${key.id}`);
  await expect(page.getByTestId("policy-rpm")).toHaveValue("600");
  // Stored as networks: a lone address becomes its host network.
  await expect(page.getByTestId("policy-ips")).toHaveValue("10.0.0.0/8\n127.0.0.1/32\n::1/128");
});

test("integration: snippets for this server and a live connection test", async ({ page }, testInfo) => {
  await signIn(page, ADMIN);
  await navigate(page, "nav-integration", en.integration.title);
  await expect(page.locator("pre.snippet").first()).toContainText(testInfo.project.use.baseURL!);
  await page.getByTestId("connection-test").click();
  await expect(page.getByTestId("connection-result")).toHaveText(/^The server answered in \d+ ms\.$/);
});
