// First run, through the UI: with no user yet every page leads to the setup, which creates the
// first admin once; afterwards the setup is closed and sends visitors to sign in. Runs as the
// `setup` project, on which the desktop and mobile projects depend.
import { devices } from "@playwright/test";

import { ADMIN, ar, en, expect, hydrated, open, test } from "./support/app";

test("the first admin is created through the setup page", async ({ page, browser, errors }, testInfo) => {
  await test.step("a fresh server sends every visitor to the setup", async () => {
    await page.goto("/");
    await page.waitForURL((url) => url.pathname === "/setup");
    await hydrated(page);
    await page.goto("/login");
    await page.waitForURL((url) => url.pathname === "/setup");
    await hydrated(page);
    await expect(page.locator("html")).toHaveAttribute("lang", "en");
    await expect(page.locator("html")).toHaveAttribute("dir", "ltr");
    await expect(page.getByRole("heading", { level: 1 })).toHaveText(en.setup.title);
    await expect(page.getByTestId("setup-form")).toBeVisible();
    await page.screenshot({ path: testInfo.outputPath("setup-en-desktop.png"), fullPage: true });
  });

  await test.step("the setup page in Arabic", async () => {
    await page.getByTestId("language-switch").click();
    await expect(page.locator("html")).toHaveAttribute("lang", "ar");
    await expect(page.locator("html")).toHaveAttribute("dir", "rtl");
    await expect(page.getByRole("heading", { level: 1 })).toHaveText(ar.setup.title);
    await expect(page.locator("label[for=setup-password]")).toHaveText(ar.setup.password);
    await expect(page.getByTestId("setup-submit")).toHaveText(ar.setup.submit);
    await page.screenshot({ path: testInfo.outputPath("setup-ar-desktop.png"), fullPage: true });
    await page.getByTestId("language-switch").click();
    await expect(page.locator("html")).toHaveAttribute("dir", "ltr");
    await expect(page.getByTestId("setup-submit")).toHaveText(en.setup.submit);
  });

  await test.step("the setup page on a phone, in both languages", async () => {
    const phone = await browser.newContext({ ...devices["Pixel 7"], baseURL: testInfo.project.use.baseURL });
    const mobile = errors.watch(await phone.newPage());
    await open(mobile, "/setup");
    await expect(mobile.getByTestId("setup-form")).toBeVisible();
    await mobile.screenshot({ path: testInfo.outputPath("setup-en-mobile.png"), fullPage: true });
    await mobile.getByTestId("language-switch").click();
    await expect(mobile.locator("html")).toHaveAttribute("dir", "rtl");
    await expect(mobile.getByRole("heading", { level: 1 })).toHaveText(ar.setup.title);
    await mobile.screenshot({ path: testInfo.outputPath("setup-ar-mobile.png"), fullPage: true });
    await phone.close();
  });

  await test.step("creating the admin leads to the sign-in page", async () => {
    await page.locator("#setup-name").fill(ADMIN.name);
    await page.locator("#setup-email").fill(ADMIN.email);
    await page.locator("#setup-password").fill(ADMIN.password);
    await page.getByTestId("setup-submit").click();
    await page.waitForURL((url) => url.pathname === "/login");
    await hydrated(page);
    await expect(page.getByTestId("login-form")).toBeVisible();
  });

  await test.step("the setup is closed from now on", async () => {
    await page.goto("/setup");
    await page.waitForURL((url) => url.pathname === "/login");
    await hydrated(page);
    await page.goto("/");
    await page.waitForURL((url) => url.pathname === "/login");
    // The server function refuses a second admin even when called directly.
    const again = await page.request.post("/api/auth/setup", {
      form: { email: "second@keyguard.test", name: "Second", password: "another-long-password" },
    });
    expect(again.status()).toBeGreaterThanOrEqual(400);
    expect(await again.text()).toContain("setup_complete");
  });
});
