// The dashboard renders on the server, hydrates in the browser, calls a server function, and
// mirrors its layout when switched to Arabic.
import { expect, test, type Page } from "@playwright/test";

/** Fails the test on any console error or failed request, the usual signs of broken hydration. */
function watchForErrors(page: Page): string[] {
  const problems: string[] = [];
  page.on("console", (msg) => {
    if (msg.type() === "error") problems.push(`console: ${msg.text()}`);
  });
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  page.on("response", (res) => {
    if (res.status() >= 400) problems.push(`HTTP ${res.status()} ${res.url()}`);
  });
  return problems;
}

async function hydrated(page: Page) {
  await expect(page.locator("html")).toHaveAttribute("data-hydrated", "true");
}

test("renders in English, hydrates and reaches the server", async ({ page }, testInfo) => {
  const problems = watchForErrors(page);
  await page.goto("/");
  await expect(page.locator("html")).toHaveAttribute("lang", "en");
  await expect(page.locator("html")).toHaveAttribute("dir", "ltr");
  await expect(page.getByRole("heading", { level: 1 })).toHaveText("KeyGuard");
  await hydrated(page);

  await page.getByTestId("check-status").click();
  await expect(page.getByTestId("status-ok")).toContainText("The server is running.");
  await page.screenshot({ path: testInfo.outputPath("home-en.png"), fullPage: true });
  expect(problems).toEqual([]);
});

test("switching to Arabic translates and mirrors the layout", async ({ page }, testInfo) => {
  const problems = watchForErrors(page);
  await page.goto("/");
  await hydrated(page);
  const brand = page.locator(".brand");
  const ltrBox = await brand.boundingBox();

  await page.getByTestId("language-switch").click();
  await expect(page.locator("html")).toHaveAttribute("dir", "rtl");
  await expect(page.locator("html")).toHaveAttribute("lang", "ar");
  await expect(page.locator(".tagline")).toHaveText("تبقى مفاتيح المزوّدين على الخادم، ويوقّع كل جهاز كل طلب.");

  // The brand sits at the inline start: left in English, right in Arabic.
  const rtlBox = await brand.boundingBox();
  const width = page.viewportSize()!.width;
  expect(ltrBox!.x).toBeLessThan(width / 2);
  expect(rtlBox!.x + rtlBox!.width).toBeGreaterThan(width / 2);
  await page.screenshot({ path: testInfo.outputPath("home-ar.png"), fullPage: true });

  // The choice is remembered: a fresh load renders Arabic on the server.
  await page.reload();
  await expect(page.locator("html")).toHaveAttribute("dir", "rtl");
  expect(problems).toEqual([]);
});

test.describe("with an Arabic browser", () => {
  test.use({ locale: "ar" });

  test("the server renders right-to-left and the page still hydrates", async ({ page }) => {
    const problems = watchForErrors(page);
    await page.goto("/");
    await expect(page.locator("html")).toHaveAttribute("dir", "rtl");
    await expect(page.getByRole("heading", { level: 1 })).toHaveText("كي جارد");
    await hydrated(page);
    await page.getByTestId("check-status").click();
    await expect(page.getByTestId("status-ok")).toContainText("الخادم يعمل.");
    expect(problems).toEqual([]);
  });
});
