// English and Arabic: every page is photographed in both languages (test artifacts), the Arabic
// interface is translated and mirrored, and the choice survives a reload.
import type { Page } from "@playwright/test";

import { ar, createKeyDirectly, en, expect, hydrated, open, signIn, test, unique } from "./support/app";
import { Device } from "./support/kg";

type Messages = typeof en;

/** The pages of the frame: nav link, path and heading key. */
const PAGES = [
  { name: "overview", nav: "nav-overview", title: (m: Messages) => m.overview.title },
  { name: "devices", nav: "nav-devices", title: (m: Messages) => m.devices.title },
  { name: "keys", nav: "nav-keys", title: (m: Messages) => m.keys.title },
  { name: "policies", nav: "nav-policies", title: (m: Messages) => m.policies.title },
  { name: "audit", nav: "nav-audit", title: (m: Messages) => m.audit.title },
  { name: "users", nav: "nav-users", title: (m: Messages) => m.users.title },
  { name: "integration", nav: "nav-integration", title: (m: Messages) => m.integration.title },
  { name: "profile", nav: "nav-profile", title: (m: Messages) => m.profile.title },
] as const;

/** The horizontal centre of an element, as a fraction of the viewport's width. */
async function centre(page: Page, selector: string): Promise<number> {
  const box = await page.locator(selector).first().boundingBox();
  expect(box, `${selector} has a box`).not.toBeNull();
  return (box!.x + box!.width / 2) / page.viewportSize()!.width;
}

async function photographEveryPage(page: Page, lang: "en" | "ar", deviceLabel: string, shot: (name: string) => Promise<void>) {
  const m = lang === "en" ? en : ar;
  for (const p of PAGES) {
    await page.getByTestId(p.nav).click();
    await expect(page.getByRole("heading", { level: 1 })).toHaveText(p.title(m));
    await expect(page.getByTestId(p.nav)).toHaveText(m.nav[p.name]);
    await expect(page.locator("p.loading")).toHaveCount(0);
    // Nothing pushes the page wider than the screen (wide tables scroll inside their wrapper).
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    expect.soft(overflow, `${p.name} (${lang}) is wider than the viewport by ${overflow}px`).toBeLessThanOrEqual(0);
    await shot(p.name);
    if (p.name === "devices") {
      await page.getByTestId("device-search").fill(deviceLabel);
      await page.getByTestId("device-row").filter({ hasText: deviceLabel }).getByRole("button", { name: deviceLabel }).click();
      await expect(page.getByTestId("device-panel")).toBeVisible();
      await expect(page.getByTestId("device-panel").getByTestId("device-approve")).toHaveText(m.devices.approve);
      await shot("devices-panel");
    }
  }
}

test("every page in English and in Arabic, translated and mirrored", async ({ page }, testInfo) => {
  test.setTimeout(90_000);
  const layout = testInfo.project.name;
  const shot = (lang: string) => async (name: string) => {
    await page.screenshot({ path: testInfo.outputPath(`${name}-${lang}-${layout}.png`), fullPage: true });
  };

  await test.step("the sign-in page in both languages", async () => {
    await open(page, "/login");
    await expect(page.locator("html")).toHaveAttribute("dir", "ltr");
    await expect(page.getByRole("heading", { level: 1 })).toHaveText(en.login.title);
    await shot("en")("login");
    await page.locator("header.topbar").getByTestId("language-switch").click();
    await expect(page.locator("html")).toHaveAttribute("lang", "ar");
    await expect(page.locator("html")).toHaveAttribute("dir", "rtl");
    await expect(page.getByRole("heading", { level: 1 })).toHaveText(ar.login.title);
    await expect(page.locator("label[for=login-email]")).toHaveText(ar.login.email);
    await expect(page.getByTestId("login-submit")).toHaveText(ar.login.submit);
    await expect(page.locator("header.topbar").getByTestId("language-switch")).toHaveText(ar.language_switch);
    await shot("ar")("login");
    await page.locator("header.topbar").getByTestId("language-switch").click();
    await expect(page.locator("html")).toHaveAttribute("dir", "ltr");
  });

  await signIn(page);
  // A device of its own, so that the devices page has a row and a panel to show.
  const key = await createKeyDirectly(page, unique(testInfo, "i18n-key"));
  const device = await Device.generate();
  const label = unique(testInfo, "i18n-device");
  const enrolled = await device.enroll(testInfo.project.use.baseURL!, key.projectKey, { label });
  expect(enrolled.status).toBe(201);

  let ltr: { nav: number; brand: number; main: number };
  await test.step("every page in English", async () => {
    await expect(page.getByTestId("role")).toHaveText(en.roles.admin);
    ltr = {
      nav: await centre(page, "[data-testid=nav-overview]"),
      brand: await centre(page, ".brand"),
      main: await centre(page, "main h1"),
    };
    await photographEveryPage(page, "en", label, shot("en"));
  });

  await test.step("switch to Arabic: translated and mirrored", async () => {
    await page.getByTestId("nav-overview").click();
    await page.locator("header.topbar").getByTestId("language-switch").click();
    await expect(page.locator("html")).toHaveAttribute("lang", "ar");
    await expect(page.locator("html")).toHaveAttribute("dir", "rtl");
    await expect(page.getByTestId("role")).toHaveText(ar.roles.admin);
    await expect(page.getByTestId("sign-out")).toHaveText(ar.nav.sign_out);
    await expect(page.locator(".brand")).toHaveText(ar.app_name);
    await expect(page.getByRole("heading", { level: 1 })).toHaveText(ar.overview.title);

    // What sits at the inline start in English sits at the right in Arabic.
    const rtl = {
      nav: await centre(page, "[data-testid=nav-overview]"),
      brand: await centre(page, ".brand"),
      main: await centre(page, "main h1"),
    };
    expect(ltr.nav).toBeLessThan(0.5);
    expect(rtl.nav).toBeGreaterThan(0.5);
    expect(ltr.brand).toBeLessThan(0.5);
    expect(rtl.brand).toBeGreaterThan(0.5);
    expect(rtl.main).toBeGreaterThan(ltr.main);
    if (layout === "desktop") {
      // The sidebar is a column beside the content: left of it in English, right of it in Arabic.
      const sidebar = (await page.locator("nav.sidebar").boundingBox())!;
      const main = (await page.locator("main#main").boundingBox())!;
      expect(sidebar.x).toBeGreaterThan(main.x + main.width - 1);
      expect(sidebar.x + sidebar.width).toBeGreaterThan(page.viewportSize()!.width - 2);
    }
  });

  await test.step("every page in Arabic", async () => {
    await photographEveryPage(page, "ar", label, shot("ar"));
  });

  await test.step("the choice is remembered: the server renders Arabic after a reload", async () => {
    await page.reload();
    await expect(page.locator("html")).toHaveAttribute("dir", "rtl");
    await expect(page.getByRole("heading", { level: 1 })).toHaveText(ar.profile.title);
    await hydrated(page);
    await page.locator("header.topbar").getByTestId("language-switch").click();
    await expect(page.locator("html")).toHaveAttribute("dir", "ltr");
    await expect(page.getByRole("heading", { level: 1 })).toHaveText(en.profile.title);
  });
});

test.describe("with an Arabic browser", () => {
  test.use({ locale: "ar" });

  test("the server renders right-to-left from the first response, and the page hydrates", async ({ page }) => {
    await page.goto("/login");
    await expect(page.locator("html")).toHaveAttribute("lang", "ar");
    await expect(page.locator("html")).toHaveAttribute("dir", "rtl");
    await expect(page.getByRole("heading", { level: 1 })).toHaveText(ar.login.title);
    await hydrated(page);
    await page.locator("header.topbar").getByTestId("language-switch").click();
    await expect(page.locator("html")).toHaveAttribute("dir", "ltr");
    await expect(page.getByRole("heading", { level: 1 })).toHaveText(en.login.title);
  });
});
