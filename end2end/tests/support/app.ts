// What every dashboard test shares: the admin created by the setup project, a `test` whose pages
// fail the test on console errors, page errors and unexpected HTTP errors, and helpers to sign in,
// wait for hydration and drive dialogs.
import { expect, test as base, type Browser, type BrowserContext, type Page, type TestInfo } from "@playwright/test";
import { readFileSync } from "node:fs";
import { join } from "node:path";

/** The first admin; `setup.spec.ts` creates it through the setup page. */
export const ADMIN = {
  name: "Ada Admin",
  email: "admin@keyguard.test",
  password: "correct-horse-battery-staple",
};

export interface Credentials {
  email: string;
  password: string;
}

type Messages = Record<string, any>;
const locales = join(__dirname, "..", "..", "..", "locales");
/** The dashboard's own strings, so assertions follow the translations rather than copies. */
export const en: Messages = JSON.parse(readFileSync(join(locales, "en.json"), "utf8"));
export const ar: Messages = JSON.parse(readFileSync(join(locales, "ar.json"), "utf8"));

/** A name no other test or project uses. */
export function unique(testInfo: TestInfo, what: string): string {
  const random = Math.random().toString(36).slice(2, 7);
  return `e2e-${what}-${testInfo.project.name}-${Date.now().toString(36)}${random}`;
}

interface AllowedFailure {
  status: number;
  url: RegExp;
}

/** Collects the signs of a broken page: console errors, uncaught errors, HTTP errors. */
export class ErrorWatch {
  readonly problems: string[] = [];
  private readonly allowed: AllowedFailure[] = [];

  /** Tolerates responses the test provokes on purpose (e.g. a 401 for a wrong password). */
  allow(status: number, url: RegExp): void {
    this.allowed.push({ status, url });
  }

  private isAllowed(status: number, url: string): boolean {
    return this.allowed.some((a) => a.status === status && a.url.test(url));
  }

  watch(page: Page): Page {
    page.on("console", (msg) => {
      if (msg.type() !== "error") return;
      const text = msg.text();
      // Chromium logs every failed response as a console error too; the status decides.
      const failed = /^Failed to load resource: the server responded with a status of (\d+)/.exec(text);
      if (failed && this.isAllowed(Number(failed[1]), msg.location().url)) return;
      this.problems.push(`console: ${text} (${msg.location().url})`);
    });
    page.on("pageerror", (err) => this.problems.push(`page error: ${err.message}`));
    page.on("response", (res) => {
      if (res.status() >= 400 && !this.isAllowed(res.status(), res.url())) {
        this.problems.push(`HTTP ${res.status()} ${res.request().method()} ${res.url()}`);
      }
    });
    return page;
  }
}

/**
 * `test` with an automatic error watch on `page`: a test fails when its page logged an error,
 * threw, or got an HTTP error it did not allow. Pages of other contexts join with `errors.watch`.
 */
export const test = base.extend<{ errors: ErrorWatch }>({
  errors: [
    async ({ page }, use) => {
      const errors = new ErrorWatch();
      errors.watch(page);
      await use(errors);
      expect(errors.problems, "console errors, page errors or HTTP errors").toEqual([]);
    },
    { auto: true },
  ],
});
export { expect };

/** A new browser context with the project's device settings (viewport, touch, user agent…). */
export async function newContext(browser: Browser, testInfo: TestInfo): Promise<BrowserContext> {
  const u = testInfo.project.use;
  return browser.newContext({
    baseURL: u.baseURL,
    viewport: u.viewport,
    userAgent: u.userAgent,
    deviceScaleFactor: u.deviceScaleFactor,
    isMobile: u.isMobile,
    hasTouch: u.hasTouch,
    locale: u.locale,
  });
}

/** Waits until the page has hydrated, so that clicks reach the application. */
export async function hydrated(page: Page): Promise<void> {
  await expect(page.locator("html")).toHaveAttribute("data-hydrated", "true");
}

/** Opens `path` and waits for hydration. */
export async function open(page: Page, path: string): Promise<void> {
  await page.goto(path);
  await hydrated(page);
}

/** Signs in through the sign-in page and lands on the overview. */
export async function signIn(page: Page, who: Credentials = ADMIN): Promise<void> {
  await open(page, "/login");
  await page.locator("#login-email").fill(who.email);
  await page.locator("#login-password").fill(who.password);
  await page.getByTestId("login-submit").click();
  await page.waitForURL((url) => url.pathname === "/");
  await hydrated(page);
  await expect(page.getByTestId("sign-out")).toBeVisible();
}

/** Follows a navigation link of the frame and waits for the page's heading. */
export async function navigate(page: Page, testid: string, heading: string | RegExp): Promise<void> {
  await page.getByTestId(testid).click();
  await expect(page.getByRole("heading", { level: 1 })).toHaveText(heading);
}

/**
 * Closes the open dialog with Escape, as a keyboard user would, wherever the focus is after the
 * dialog's last action. If Escape does not close it the test fails (softly, so that the rest of
 * the flow still runs and reports), and the dialog's close button is used instead.
 */
export async function closeDialog(page: Page): Promise<void> {
  const dialog = page.getByRole("dialog");
  await page.keyboard.press("Escape");
  await expect.soft(dialog, "Escape closes the dialog").toHaveCount(0, { timeout: 3_000 });
  if ((await dialog.count()) > 0) {
    await dialog.getByRole("button", { name: en.common.close }).click();
    await expect(dialog).toHaveCount(0);
  }
}

/** Calls a server function with a JSON body from the page's session. */
export async function serverFn(page: Page, endpoint: string, data: unknown) {
  return page.request.post(`/api/${endpoint}`, { data });
}

/** Calls a server function with a url-encoded body from the page's session. */
export async function serverFnForm(page: Page, endpoint: string, form: Record<string, string | number | boolean>) {
  return page.request.post(`/api/${endpoint}`, { form });
}

export interface CreatedKey {
  id: string;
  name: string;
  projectKey: string;
}

/** Creates a key through its server function (for tests whose subject is not the wizard). */
export async function createKeyDirectly(page: Page, name: string, baseUrl = ""): Promise<CreatedKey> {
  const res = await serverFn(page, "keys/create", {
    input: {
      name,
      provider: "openai",
      environment: "development",
      provider_key: `sk-${name}`,
      base_url: baseUrl,
      azure_deployment: "",
      azure_api_version: "",
      expires_in_days: "",
      description: "",
    },
  });
  expect(res.status(), await res.text()).toBe(200);
  const created = await res.json();
  return { id: created.key.id, name, projectKey: created.project_key };
}
