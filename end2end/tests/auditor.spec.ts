// Roles: an admin adds an auditor in the Users page; the auditor, signed in in a browser of their
// own, reads everything but sees no control that writes, and the server functions refuse them
// with 403 when called directly (hiding buttons is a courtesy, the server is the control).
import { ADMIN, createKeyDirectly, en, expect, navigate, newContext, open, serverFn, serverFnForm, signIn, test, unique } from "./support/app";
import { Device } from "./support/kg";

test("an auditor reads but cannot change anything", async ({ page, browser, errors }, testInfo) => {
  test.setTimeout(90_000);
  const auditor = {
    name: "Audrey Auditor",
    email: `${unique(testInfo, "auditor")}@keyguard.test`,
    password: "auditor-password-long-enough",
  };

  // The admin prepares a key and a pending device the auditor will look at.
  await signIn(page, ADMIN);
  const key = await createKeyDirectly(page, unique(testInfo, "auditor-key"));
  const device = await Device.generate();
  const label = unique(testInfo, "auditor-device");
  const enrolled = await device.enroll(testInfo.project.use.baseURL!, key.projectKey, { label });
  expect(enrolled.status).toBe(201);
  const deviceId = (await enrolled.json()).id as string;

  await test.step("the admin adds the auditor in the Users page", async () => {
    await navigate(page, "nav-users", en.users.title);
    await page.getByTestId("create-user").click();
    const form = page.getByTestId("create-user-form");
    await form.locator("#new-user-name").fill(auditor.name);
    await form.locator("#new-user-email").fill(auditor.email);
    await form.locator("#new-user-role").selectOption("auditor");
    await form.locator("#new-user-password").fill(auditor.password);
    await form.locator("button[type=submit]").click();
    await expect(page.getByRole("dialog")).toHaveCount(0);
    const row = page.getByTestId("user-row").filter({ hasText: auditor.email });
    await expect(row).toHaveCount(1);
    await expect(row).toContainText(en.roles.auditor);
  });

  const context = await newContext(browser, testInfo);
  const as = errors.watch(await context.newPage());
  try {
    await test.step("the auditor signs in in a fresh browser", async () => {
      await signIn(as, auditor);
      await expect(as.getByTestId("role")).toHaveText(en.roles.auditor);
      await expect(as.getByTestId("nav-audit")).toBeVisible();
      await expect(as.getByTestId("nav-users")).toBeVisible();
    });

    await test.step("no control that writes", async () => {
      await navigate(as, "nav-keys", en.keys.title);
      const card = as.locator(`[data-testid=key-card][data-name="${key.name}"]`);
      await expect(card).toBeVisible();
      await expect(as.getByTestId("create-key")).toHaveCount(0);
      await expect(card.getByRole("button")).toHaveCount(0);

      await navigate(as, "nav-devices", en.devices.title);
      await expect(as.getByTestId("issue-code")).toHaveCount(0);
      await as.getByTestId("device-search").fill(label);
      await as.getByTestId("device-row").filter({ hasText: label }).getByRole("button", { name: label }).click();
      const panel = as.getByTestId("device-panel");
      await expect(panel.getByTestId("device-key-id")).toHaveText(device.keyId);
      for (const action of ["device-approve", "device-reactivate", "device-suspend", "device-rename", "device-revoke"]) {
        await expect(panel.getByTestId(action), action).toHaveCount(0);
      }

      await navigate(as, "nav-users", en.users.title);
      await expect(as.getByTestId("users-table")).toContainText(ADMIN.email);
      await expect(as.getByTestId("create-user")).toHaveCount(0);
      await expect(as.getByTestId("users-table").locator("select, button")).toHaveCount(0);

      await navigate(as, "nav-policies", en.policies.title);
      await expect(as.getByTestId("policy-form")).toBeVisible();
      await expect(as.getByTestId("policy-save")).toHaveCount(0);
      await expect(as.getByTestId("policy-rpm")).toBeDisabled();

      await navigate(as, "nav-audit", en.audit.title);
      await expect(as.getByTestId("audit-table")).toBeVisible();
      await expect(as.getByTestId("export-csv")).toBeVisible();
    });

    await test.step("the server functions answer 403", async () => {
      const detail = await serverFnForm(as, "devices/get", { id: deviceId });
      expect(detail.status()).toBe(200);
      const version = (await detail.json()).version;

      const approve = await serverFn(as, "devices/change", { id: deviceId, change: "Approve", text: "", version });
      expect(approve.status()).toBe(403);
      expect(await approve.text()).toContain("Forbidden");
      const revoke = await serverFn(as, "devices/change", { id: deviceId, change: "Revoke", text: "no", version });
      expect(revoke.status()).toBe(403);

      const create = await serverFn(as, "keys/create", {
        input: {
          name: unique(testInfo, "forbidden-key"),
          provider: "openai",
          environment: "production",
          provider_key: "sk-never",
          base_url: "",
          azure_deployment: "",
          azure_api_version: "",
          expires_in_days: "",
          description: "",
        },
      });
      expect(create.status()).toBe(403);

      const code = await serverFnForm(as, "devices/issue_code", {
        api_key_id: key.id,
        expires_in_minutes: 15,
        max_uses: 1,
        auto_approve: true,
      });
      expect(code.status()).toBe(403);

      const user = await serverFnForm(as, "users/create", {
        email: `${unique(testInfo, "forbidden-user")}@keyguard.test`,
        name: "Nobody",
        role: "admin",
        password: "a-long-enough-password",
      });
      expect(user.status()).toBe(403);

      const policy = await serverFn(as, "policies/save", {
        scope_id: `device:${deviceId}`,
        form: {
          timestamp_window_seconds: "",
          requests_per_minute: "1",
          tokens_per_day: "",
          ip_allow_list: "",
          allowed_providers: [],
          allowed_models: "",
          require_approval: "",
        },
      });
      expect(policy.status()).toBe(403);
    });

    await test.step("nothing changed", async () => {
      const after = await serverFnForm(as, "devices/get", { id: deviceId });
      expect((await after.json()).device.status).toBe("pending");
      await open(as, "/keys");
      await expect(as.locator(`[data-testid=key-card][data-name^="e2e-forbidden-key-${testInfo.project.name}"]`)).toHaveCount(0);
    });
  } finally {
    await context.close();
  }
});
