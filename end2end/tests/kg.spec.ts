// The test client's kg-v1 signer, checked against the vectors produced by the original TypeScript
// SDK and against node:crypto as an independent verifier. The browser tests trust this client, so
// it has to be right on its own first.
import { expect, test } from "@playwright/test";
import { createPublicKey, verify as nodeVerify } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";

import {
  ALG,
  Device,
  EMPTY_BODY_SHA256,
  SPKI_PREFIX,
  bodySha256,
  canonicalString,
  keyIdOf,
  newNonce,
  verifyP1363,
} from "./support/kg";

interface Vector {
  enrollment: { publicKey: string; keyId: string; deviceFingerprint: string; label: string };
  request: { method: string; pathAndQuery: string; body: string; headers: Record<string, string> };
  canonicalString: string;
  signatureDerBase64: string;
  privateKey: { pkcs8Base64: string };
}

const vectorsFile =
  process.env.KG_VECTORS ?? join(__dirname, "..", "..", "..", "shared", "testdata", "kg-v1-vectors.json");
const vectors: Vector[] = JSON.parse(readFileSync(vectorsFile, "utf8")).vectors;

/** node:crypto's verdict on a P1363 signature, independent of WebCrypto. */
function nodeVerifies(publicKeyBase64: string, text: string, signatureBase64: string): boolean {
  const key = createPublicKey({ key: Buffer.from(publicKeyBase64, "base64"), format: "der", type: "spki" });
  return nodeVerify("sha256", Buffer.from(text, "utf8"), { key, dsaEncoding: "ieee-p1363" }, Buffer.from(signatureBase64, "base64"));
}

test("there are vectors to check", () => {
  expect(vectors.length).toBeGreaterThanOrEqual(2);
});

for (const [i, v] of vectors.entries()) {
  test(`vector ${i + 1} (${v.request.method} ${v.request.pathAndQuery}): canonical string, keyId, body hash, signature`, async () => {
    const h = v.request.headers;
    expect(keyIdOf(v.enrollment.publicKey)).toBe(v.enrollment.keyId);
    expect(h["x-keyguard-key-id"]).toBe(v.enrollment.keyId);
    expect(bodySha256(v.request.body)).toBe(h["x-keyguard-body-sha256"]);
    if (v.request.body === "") expect(bodySha256("")).toBe(EMPTY_BODY_SHA256);

    const rebuilt = canonicalString({
      timestamp: h["x-keyguard-timestamp"],
      method: v.request.method,
      pathAndQuery: v.request.pathAndQuery,
      bodySha256: h["x-keyguard-body-sha256"],
      nonce: h["x-keyguard-nonce"],
      apiKey: h["x-keyguard-api-key"],
      keyId: h["x-keyguard-key-id"],
    });
    expect(rebuilt).toBe(v.canonicalString);

    // The SDK's signature verifies with the vector's public key over our canonical string...
    expect(await verifyP1363(v.enrollment.publicKey, rebuilt, h["x-keyguard-signature"])).toBe(true);
    expect(nodeVerifies(v.enrollment.publicKey, rebuilt, h["x-keyguard-signature"])).toBe(true);
    // ...and over nothing else.
    expect(await verifyP1363(v.enrollment.publicKey, rebuilt.replace("kg-v1|", "kg-v2|"), h["x-keyguard-signature"])).toBe(false);

    // Signing the same request with the vector's private key gives a signature the SDK's
    // verifier accepts (ECDSA is randomised, so verify rather than compare).
    const device = await Device.fromPkcs8(v.privateKey.pkcs8Base64, v.enrollment.publicKey);
    expect(device.keyId).toBe(v.enrollment.keyId);
    const { headers, canonical } = await device.signRequest({
      apiKey: h["x-keyguard-api-key"],
      method: v.request.method,
      pathAndQuery: v.request.pathAndQuery,
      body: v.request.body,
      timestamp: h["x-keyguard-timestamp"],
      nonce: h["x-keyguard-nonce"],
    });
    expect(canonical).toBe(v.canonicalString);
    for (const name of ["x-keyguard-api-key", "x-keyguard-key-id", "x-keyguard-timestamp", "x-keyguard-nonce", "x-keyguard-body-sha256", "x-keyguard-alg"] as const) {
      expect(headers[name], name).toBe(h[name]);
    }
    expect(headers["x-keyguard-signature"]).toHaveLength(88);
    expect(nodeVerifies(v.enrollment.publicKey, canonical, headers["x-keyguard-signature"])).toBe(true);
  });
}

test("a generated device has the wire formats of the protocol", async () => {
  const device = await Device.generate();
  expect(device.publicKey).toHaveLength(124);
  expect(device.publicKey.startsWith(SPKI_PREFIX)).toBe(true);
  expect(device.keyId).toMatch(/^[0-9a-f]{32}$/);
  expect(device.keyId).toBe(keyIdOf(device.publicKey));
  expect(newNonce()).toMatch(/^[A-Za-z0-9+/]{22}==$/);

  const body = JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hello" }] });
  const { headers, canonical } = await device.signRequest({
    apiKey: "kg_test",
    method: "post",
    pathAndQuery: "/api/v1/proxy/openai/v1/chat/completions",
    body,
  });
  expect(headers["x-keyguard-alg"]).toBe(ALG);
  expect(headers["x-keyguard-timestamp"]).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
  expect(headers["x-keyguard-signature"]).toMatch(/^[A-Za-z0-9+/]{86}==$/);
  expect(canonical.split("|")).toEqual([
    "kg-v1",
    headers["x-keyguard-timestamp"],
    "POST",
    "/api/v1/proxy/openai/v1/chat/completions",
    bodySha256(body),
    headers["x-keyguard-nonce"],
    "kg_test",
    device.keyId,
  ]);
  expect(nodeVerifies(device.publicKey, canonical, headers["x-keyguard-signature"])).toBe(true);
  expect(nodeVerifies(device.publicKey, canonical + "x", headers["x-keyguard-signature"])).toBe(false);
});
