// Browser tests drive the distribution's Chromium (browser downloads are not possible here) against
// a keyguard server that Playwright starts on a loopback port with a throwaway SQLite store.
//
// One server serves every test, and its first admin can be created only once, so the projects
// run in this order:
//   signer  — the test client's kg-v1 signer against the SDK's vectors (no browser);
//   setup   — creates the first admin through the setup page (`setup.spec.ts`);
//   desktop, mobile — everything else, in parallel, each test signing in as that admin and
//             making its own keys, devices and users under unique names.
import { defineConfig, devices } from "@playwright/test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const port = Number(process.env.KEYGUARD_E2E_PORT ?? 3107);
const baseURL = `http://127.0.0.1:${port}`;
const chromium = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
// Made once by the main process; the workers, which load this file again, inherit it.
const dataDir = (process.env.KEYGUARD_E2E_DATA_DIR ??= mkdtempSync(join(tmpdir(), "keyguard-e2e-")));

const SIGNER = /kg\.spec\.ts$/;
const SETUP = /setup\.spec\.ts$/;

export default defineConfig({
  testDir: "./tests",
  outputDir: "./test-results",
  fullyParallel: true,
  forbidOnly: !!process.env.CI,
  retries: 0,
  workers: 2,
  reporter: [["list"]],
  timeout: 30_000,
  expect: { timeout: 10_000 },
  use: {
    baseURL,
    browserName: "chromium",
    trace: "retain-on-failure",
    launchOptions: {
      executablePath: chromium,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    },
  },
  projects: [
    { name: "signer", testMatch: SIGNER },
    { name: "setup", testMatch: SETUP, use: { viewport: { width: 1280, height: 800 } } },
    {
      name: "desktop",
      testIgnore: [SIGNER, SETUP],
      dependencies: ["signer", "setup"],
      use: { viewport: { width: 1280, height: 800 } },
    },
    {
      name: "mobile",
      testIgnore: [SIGNER, SETUP],
      dependencies: ["signer", "setup"],
      use: { ...devices["Pixel 7"], browserName: "chromium" },
    },
  ],
  webServer: {
    command: process.env.KEYGUARD_BIN ?? "../target/debug/keyguard",
    url: `${baseURL}/api/v1/health`,
    reuseExistingServer: false,
    timeout: 60_000,
    stdout: "pipe",
    stderr: "pipe",
    env: {
      LEPTOS_SITE_ADDR: `127.0.0.1:${port}`,
      LEPTOS_SITE_ROOT: process.env.KEYGUARD_SITE_ROOT ?? "../target/site",
      KEYGUARD_DATA_DIR: dataDir,
    },
  },
});
