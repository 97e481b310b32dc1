// The path every deployment takes, end to end: an admin creates a key in the wizard (with a
// per-key base URL pointing at a fake OpenAI), issues an enrollment code, a real signing client
// enrolls with it, the admin approves the device, a signed call goes through the proxy to the
// fake upstream and shows up in the audit log's live tail, the admin suspends the device, its
// next call is refused, and the audit export has both.
import { readFile } from "node:fs/promises";

import { closeDialog, en, expect, hydrated, navigate, open, signIn, test, unique } from "./support/app";
import { csvRecords, parseCsv } from "./support/csv";
import { Device, OPENAI_CHAT_PATH } from "./support/kg";
import { FAKE_USAGE, startFakeOpenAI, type FakeUpstream } from "./support/upstream";

let upstream: FakeUpstream;
test.beforeAll(async () => {
  upstream = await startFakeOpenAI();
});
test.afterAll(async () => {
  await upstream?.close();
});

const CSV_COLUMNS = [
  "position",
  "at",
  "event_type",
  "outcome",
  "summary",
  "actor_type",
  "actor_id",
  "ip",
  "user_agent",
  "request_id",
  "aggregate_type",
  "aggregate_id",
  "sequence",
  "device_id",
  "api_key_id",
  "event_id",
  "payload",
];

test("key → code → enrollment → approval → signed call → live audit → suspension → refusal → CSV", async ({ page }, testInfo) => {
  test.setTimeout(120_000);
  const baseURL = testInfo.project.use.baseURL!;
  const keyName = unique(testInfo, "key");
  const deviceLabel = unique(testInfo, "device");
  const providerSecret = `sk-e2e-${Math.random().toString(36).slice(2)}${Date.now().toString(36)}`;
  const device = await Device.generate();
  const body = JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hello" }] });
  let projectKey = "";
  let code = "";
  let deviceId = "";

  await signIn(page);

  await test.step("create a key in the wizard", async () => {
    await navigate(page, "nav-keys", en.keys.title);
    await page.getByTestId("create-key").click();
    const form = page.getByTestId("create-key-form");
    await expect(form).toBeVisible();
    await form.getByTestId("key-name").fill(keyName);
    await form.getByTestId("key-provider").selectOption("openai");
    await form.getByTestId("key-next").click();
    await form.getByTestId("key-secret").fill(providerSecret);
    await form.getByTestId("key-base-url").fill(upstream.url);
    await form.getByTestId("key-next").click();
    await form.locator("#key-days").fill("30");
    await expect(form.getByTestId("key-next")).toHaveText(en.keys.create);
    await form.getByTestId("key-next").click();

    await expect(page.getByTestId("project-key-once")).toBeVisible();
    projectKey = (await page.getByTestId("project-key").textContent())!.trim();
    expect(projectKey).toMatch(/^kg_\S{20,}$/);
    await expect(page.getByTestId("copy-project-key")).toBeVisible();
    await closeDialog(page);

    const card = page.locator(`[data-testid=key-card][data-name="${keyName}"]`);
    await expect(card).toBeVisible();
    await expect(card).toContainText(upstream.url);
    // The project key is shown once: the card has its prefix only, never the secrets.
    await expect(card).not.toContainText(projectKey);
    await expect(page.locator("body")).not.toContainText(providerSecret);
  });

  await test.step("issue an enrollment code for that key", async () => {
    await navigate(page, "nav-devices", en.devices.title);
    await page.getByTestId("issue-code").click();
    const form = page.getByTestId("issue-code-form");
    await expect(form).toBeVisible();
    await form.getByTestId("code-key").selectOption({ label: keyName });
    await form.locator("#code-minutes").fill("15");
    await form.locator("#code-uses").fill("1");
    await expect(form.locator("#code-auto")).not.toBeChecked();
    await form.getByTestId("issue-code-submit").click();

    await expect(page.getByTestId("issued-code")).toBeVisible();
    code = (await page.getByTestId("issued-code").textContent())!.trim();
    expect(code).toMatch(/^kgc_\S+$/);
    await expect(page.getByTestId("code-countdown")).toHaveText(/Expires in 1[45] min \d+ s/);
    await expect(page.getByTestId("copy-code")).toBeVisible();
    await closeDialog(page);
  });

  await test.step("a real client enrolls with the code and waits for approval", async () => {
    const res = await device.enroll(baseURL, projectKey, {
      label: deviceLabel,
      enrollmentCode: code,
      userAgent: "keyguard-e2e/1.0",
      metadata: { platform: "node", suite: "end2end" },
    });
    const text = await res.text();
    expect(res.status, text).toBe(201);
    const enrolled = JSON.parse(text);
    expect(enrolled.status).toBe("PENDING");
    expect(enrolled.id).toMatch(/^[0-9a-f-]{36}$/);
    deviceId = enrolled.id;

    // The code was for one device: a second enrollment with it is refused with a clear 400.
    const other = await Device.generate();
    const again = await other.enroll(baseURL, projectKey, { label: `${deviceLabel}-2`, enrollmentCode: code });
    expect(again.status).toBe(400);
  });

  await test.step("approve the device in the devices page", async () => {
    await open(page, "/devices");
    await page.getByTestId("device-search").fill(deviceLabel);
    const row = page.getByTestId("device-row").filter({ hasText: deviceLabel });
    await expect(row).toHaveCount(1);
    await expect(row).toHaveAttribute("data-status", "pending");
    await row.getByRole("button", { name: deviceLabel }).click();
    await expect(page).toHaveURL(new RegExp(`/devices\\?device=${deviceId}$`));
    const panel = page.getByTestId("device-panel");
    await expect(panel.getByTestId("device-key-id")).toHaveText(device.keyId);
    await expect(panel).toContainText("keyguard-e2e/1.0");
    await panel.getByTestId("device-approve").click();
    await expect(row).toHaveAttribute("data-status", "active");
    await expect(panel.getByTestId("device-approve")).toHaveCount(0);
    await expect(panel.getByTestId("device-suspend")).toBeVisible();
    await expect(panel.getByTestId("device-history")).toContainText("DeviceApproved");
  });

  await test.step("a signed call reaches the upstream and appears in the live tail", async () => {
    await navigate(page, "nav-audit", en.audit.title);
    // Follow only this device's entries: other tests call the proxy at the same time.
    await page.locator("#audit-device").fill(deviceId);
    await page.locator("#audit-device").press("Tab");
    await page.getByTestId("tail-toggle").click();
    await expect(page.getByTestId("tail-toggle")).toHaveAttribute("aria-pressed", "true");
    await expect(page.getByTestId("tail-state")).toHaveAttribute("data-live", "true");
    await expect(page.getByTestId("tail-state")).toHaveAttribute("data-connected", "true");
    await expect(page.getByTestId("tail-state")).toHaveText(en.audit.following);

    const before = upstream.received.length;
    const res = await device.call(baseURL, { apiKey: projectKey, method: "POST", pathAndQuery: OPENAI_CHAT_PATH, body });
    const answer = await res.text();
    expect(res.status, answer).toBe(200);
    expect(JSON.parse(answer).choices[0].message.content).toBe("Hello from the fake upstream.");

    expect(upstream.received).toHaveLength(before + 1);
    const got = upstream.received[before];
    expect(got.method).toBe("POST");
    expect(got.url).toBe("/v1/chat/completions");
    expect(got.body).toBe(body);
    expect(got.headers.authorization).toBe(`Bearer ${providerSecret}`);
    expect(Object.keys(got.headers).filter((h) => h.startsWith("x-keyguard-"))).toEqual([]);
    expect(JSON.stringify(got.headers)).not.toContain(projectKey);

    // No reload: the entry arrives over the stream.
    const completed = page.locator("[data-testid=tail-entry][data-type=RequestCompleted]");
    await expect(completed).toHaveCount(1);
    await expect(completed).toContainText("/v1/chat/completions");
    await expect(page.getByTestId("tail-state")).toHaveAttribute("data-connected", "true");
  });

  await test.step("suspend the device with a reason", async () => {
    await open(page, `/devices?device=${deviceId}`);
    const panel = page.getByTestId("device-panel");
    await expect(panel.getByTestId("device-key-id")).toHaveText(device.keyId);
    // The call is counted (with the upstream's token usage) once the read model caught up.
    await expect(async () => {
      await page.reload();
      await hydrated(page);
      await expect(page.getByTestId("device-usage")).toContainText(
        `1 requests · ${FAKE_USAGE.prompt_tokens} tokens in · ${FAKE_USAGE.completion_tokens} tokens out`,
        { timeout: 1_000 },
      );
    }).toPass({ timeout: 15_000 });

    await panel.getByTestId("device-suspend").click();
    const dialog = page.getByRole("dialog");
    await expect(dialog).toContainText(en.devices.suspend_title);
    const submit = dialog.getByTestId("device-change-submit");
    await expect(submit).toBeDisabled();
    await dialog.getByTestId("device-change-text").fill("lost on a train");
    await submit.click();
    await expect(dialog).toHaveCount(0);
    await expect(panel.getByTestId("device-reactivate")).toBeVisible();
    await expect(panel.getByTestId("device-suspend")).toHaveCount(0);
    await expect(panel).toContainText("lost on a train");
    await expect(panel.getByTestId("device-history")).toContainText("DeviceSuspended");
    await page.getByTestId("device-search").fill(deviceLabel);
    await expect(page.getByTestId("device-row").filter({ hasText: deviceLabel })).toHaveAttribute("data-status", "suspended");
  });

  await test.step("the suspended device's next call is refused and audited", async () => {
    await navigate(page, "nav-audit", en.audit.title);
    await page.locator("#audit-device").fill(deviceId);
    await page.locator("#audit-device").press("Tab");
    await page.getByTestId("tail-toggle").click();
    await expect(page.getByTestId("tail-state")).toHaveAttribute("data-connected", "true");

    const before = upstream.received.length;
    const res = await device.call(baseURL, { apiKey: projectKey, method: "POST", pathAndQuery: OPENAI_CHAT_PATH, body });
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual({ error: "unauthorized" });
    expect(upstream.received).toHaveLength(before);

    await expect(page.locator("[data-testid=tail-entry][data-type=ProxyRequestRejected]")).toHaveCount(1);
  });

  await test.step("the CSV export has the call and the refusal", async () => {
    const [download] = await Promise.all([page.waitForEvent("download"), page.getByTestId("export-csv").click()]);
    expect(download.suggestedFilename()).toMatch(/^keyguard-audit-.*\.csv$/);
    const file = testInfo.outputPath("audit-export.csv");
    await download.saveAs(file);
    const rows = parseCsv(await readFile(file, "utf8"));
    expect(rows[0]).toEqual(CSV_COLUMNS);
    const records = csvRecords(rows);
    const mine = records.filter((r) => r.device_id === deviceId);
    const completed = mine.filter((r) => r.event_type === "RequestCompleted");
    expect(completed, "RequestCompleted rows of the device").toHaveLength(1);
    expect(completed[0].outcome).toBe("success");
    expect(completed[0].summary).toContain("/v1/chat/completions");
    const refused = mine.filter((r) => r.event_type === "ProxyRequestRejected");
    expect(refused, "rejection rows of the device").toHaveLength(1);
    expect(refused[0].outcome).not.toBe("success");
    expect(mine.map((r) => r.event_type)).toEqual(expect.arrayContaining(["DeviceEnrolled", "DeviceApproved", "DeviceSuspended"]));
    // Neither secret ever reaches the audit trail.
    const text = rows.flat().join("\n");
    expect(text).not.toContain(providerSecret);
    expect(text).not.toContain(projectKey);
  });
});
