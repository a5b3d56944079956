"use strict";
// The auditor page: fetch a case's audit history and verify every entry in this browser.
// The token is kept in a variable of this closure only (never in storage, the URL or the DOM).
// Everything shown is parsed from the leaf data that was hashed, and only set with textContent.
(() => {
  let token = null;
  const $ = (id) => document.getElementById(id);
  const enc = new TextEncoder();
  const CHECKPOINT_CONTEXT = "RGW1-CHECKPOINT\u0000";

  // --- bytes -----------------------------------------------------------------------------
  function hexToBytes(hex) {
    if (typeof hex !== "string" || !/^([0-9a-f]{2})*$/.test(hex)) return null;
    const out = new Uint8Array(hex.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
    return out;
  }
  function toHex(bytes) {
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }
  function b64urlToBytes(text) {
    if (typeof text !== "string" || !/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) return null;
    const b64 = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
    const raw = atob(b64);
    return Uint8Array.from(raw, (c) => c.charCodeAt(0));
  }
  function equal(a, b) {
    if (!a || !b || a.length !== b.length) return false;
    let diff = 0;
    for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
    return diff === 0;
  }
  function concat(...parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  }
  async function sha256(...parts) {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", concat(...parts)));
  }

  // --- RFC 9162 ----------------------------------------------------------------------------
  const leafHash = (leafData) => sha256(new Uint8Array([0]), enc.encode(leafData));
  const nodeHash = (left, right) => sha256(new Uint8Array([1]), left, right);

  // Root implied by an inclusion proof (RFC 9162 §2.1.3.2), or null if the proof has the wrong shape.
  async function rootFromInclusion(index, treeSize, leaf, proof) {
    let fn = BigInt(index);
    let sn = BigInt(treeSize) - 1n;
    let r = leaf;
    if (fn > sn || fn < 0n) return null;
    for (const p of proof) {
      if (sn === 0n) return null;
      if ((fn & 1n) === 1n || fn === sn) {
        r = await nodeHash(p, r);
        while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
      } else {
        r = await nodeHash(r, p);
      }
      fn >>= 1n;
      sn >>= 1n;
    }
    return sn === 0n ? r : null;
  }

  // --- the checkpoint ----------------------------------------------------------------------
  // JCS of the body: its members are ASCII strings and safe integers, for which sorted
  // members and JSON.stringify are exactly RFC 8785. Anything else is refused.
  function canonicalBody(body) {
    const names = ["format", "kid", "origin", "root_hash", "signed_at", "tree_size"];
    if (typeof body !== "object" || body === null || Object.keys(body).sort().join() !== names.join()) return null;
    for (const name of names) {
      const v = body[name];
      const ok = (typeof v === "string" && /^[\x20-\x21\x23-\x5b\x5d-\x7e]*$/.test(v)) || Number.isSafeInteger(v);
      if (!ok) return null;
    }
    return "{" + names.map((n) => JSON.stringify(n) + ":" + JSON.stringify(body[n])).join(",") + "}";
  }

  async function checkCheckpoint(cp, origin) {
    const body = cp.note && cp.note.checkpoint;
    const root = b64urlToBytes(body && body.root_hash);
    const signature = b64urlToBytes(cp.note && cp.note.signature);
    const canonical = canonicalBody(body);
    if (!canonical || !root || root.length !== 32 || !signature || signature.length !== 64) {
      return { state: "failed", text: "checkpoint note is malformed", root: null };
    }
    if (body.origin !== origin || body.tree_size !== cp.tree_size || toHex(root) !== cp.root_hash) {
      return { state: "failed", text: "checkpoint note does not match the gateway's description of it", root: null };
    }
    const key = cp.signing_key;
    if (!key || key.kid !== body.kid) return { state: "failed", text: "signing key not in the directory", root };
    if (key.status === "revoked") return { state: "failed", text: "signing key " + key.kid + " was revoked", root };
    const publicKey = b64urlToBytes(key.public_key);
    let cryptoKey;
    try {
      cryptoKey = await crypto.subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]);
    } catch (err) {
      return { state: "unsupported", text: "not checked: this browser has no Ed25519 (verify offline)", root };
    }
    const ok = await crypto.subtle.verify({ name: "Ed25519" }, cryptoKey, signature,
      enc.encode(CHECKPOINT_CONTEXT + canonical));
    return ok
      ? { state: "verified", text: "Ed25519 signature verified (key " + key.kid + ", " + key.status + ")", root }
      : { state: "failed", text: "Ed25519 signature does NOT verify", root };
  }

  // --- one entry ---------------------------------------------------------------------------
  async function checkEntry(item, cp, cpCheck, caseRef) {
    let leaf;
    try { leaf = JSON.parse(item.leaf_data); } catch (err) { return { leaf: null, status: "failed", why: "leaf data is not JSON" }; }
    if (leaf.case_ref !== caseRef) return { leaf, status: "failed", why: "entry is not about this case" };
    const recorded = hexToBytes(item.entry && item.entry.entry_hash);
    const computed = await leafHash(item.leaf_data);
    if (!equal(recorded, computed)) return { leaf, status: "failed", why: "leaf hash differs from the recorded hash" };
    if (!item.covered) return { leaf, status: "pending", why: "newer than the latest checkpoint" };
    if (!cp || item.seq > cp.tree_size || !Array.isArray(item.proof)) {
      return { leaf, status: "failed", why: "claimed covered without a checkpoint that covers it" };
    }
    const proof = item.proof.map(hexToBytes);
    if (proof.some((p) => !p || p.length !== 32)) return { leaf, status: "failed", why: "malformed proof" };
    const root = await rootFromInclusion(item.seq - 1, cp.tree_size, computed, proof);
    if (!root || !equal(root, cpCheck.root)) return { leaf, status: "failed", why: "proof does not lead to the signed root" };
    if (cpCheck.state === "verified") return { leaf, status: "verified", why: "leaf → proof → signed root" };
    if (cpCheck.state === "unsupported") return { leaf, status: "unchecked", why: "root matches; signature not checked" };
    return { leaf, status: "failed", why: "checkpoint signature: " + cpCheck.text };
  }

  // --- rendering (textContent only) ----------------------------------------------------------
  function cell(text, className, title) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    if (title) td.title = title;
    return td;
  }
  function codes(detail) {
    if (!detail || typeof detail !== "object") return "";
    return Object.keys(detail).sort().map((k) => {
      const v = detail[k];
      const shown = Array.isArray(v) ? (v.length ? v.join(", ") : "–") : v === null ? "–" : String(v);
      return k + ": " + shown;
    }).join("; ");
  }
  const LABELS = { verified: "verified", pending: "not yet covered", failed: "FAILED", unchecked: "root matches" };

  function setStatus(text, state) {
    $("status").textContent = text;
    document.body.dataset.state = state;
  }

  async function api(path) {
    const response = await fetch(path, {
      headers: { Authorization: "Bearer " + token, Accept: "application/json" },
      cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer",
    });
    let body = null;
    try { body = await response.json(); } catch (err) { body = null; }
    if (!response.ok) {
      const reason = response.status === 401 ? "the token was not accepted"
        : response.status === 403 ? "this token's role may not read the audit log"
        : (body && body.detail) || ("HTTP " + response.status);
      throw new Error(reason);
    }
    return body;
  }

  async function show(caseRef) {
    $("history").hidden = true;
    $("checkpoint").hidden = true;
    $("rows").replaceChildren();
    setStatus("Loading…", "loading");
    const items = [];
    let page = await api("audit/cases/" + encodeURIComponent(caseRef));
    const first = page;
    items.push(...page.items);
    while (page.next_after_seq !== null) {
      page = await api("audit/cases/" + encodeURIComponent(caseRef) + "?after_seq=" + page.next_after_seq);
      items.push(...page.items);
    }
    const cp = first.checkpoint;
    let cpCheck = { state: "failed", text: "no checkpoint has been signed yet", root: null };
    $("cp-log-size").textContent = String(first.log_size);
    if (cp) {
      cpCheck = await checkCheckpoint(cp, first.origin);
      $("cp-origin").textContent = cp.origin;
      $("cp-size").textContent = String(cp.tree_size) + " entries";
      $("cp-signed").textContent = cp.signed_at;
      $("cp-root").textContent = cp.root_hash;
    }
    $("cp-signature").textContent = cpCheck.text;
    $("cp-signature").className = cpCheck.state === "verified" ? "ok" : cpCheck.state === "failed" ? "bad" : "";
    $("checkpoint").hidden = false;

    const counts = { verified: 0, pending: 0, failed: 0, unchecked: 0 };
    for (const item of items) {
      const result = await checkEntry(item, cp, cpCheck, caseRef);
      counts[result.status] += 1;
      const leaf = result.leaf || {};
      const tr = document.createElement("tr");
      tr.dataset.seq = String(item.seq);
      tr.dataset.event = String(leaf.event_type || "");
      tr.append(
        cell(String(item.seq), "mono"),
        cell(String(leaf.at || "").replace("T", " ").replace(/\.\d+Z$/, ""), "mono", leaf.at),
        cell(String(leaf.event_type || ""), "nowrap"),
        cell(String(leaf.actor || "")),
        cell(leaf.agency || "–", "nowrap"),
        cell(codes(leaf.detail)),
        cell(leaf.message_id ? leaf.message_id.slice(0, 8) + "…" : "–", "mono", leaf.message_id || ""),
      );
      const check = cell(LABELS[result.status], "check", result.why);
      check.dataset.status = result.status;
      tr.append(check);
      $("rows").append(tr);
    }
    $("case-shown").textContent = caseRef;
    $("summary").textContent = items.length + " entries: " + counts.verified + " verified, " + counts.pending +
      " not yet covered by a checkpoint, " + counts.failed + " failed" +
      (counts.unchecked ? ", " + counts.unchecked + " with an unchecked signature" : "") + ".";
    $("history").hidden = false;
    if (counts.failed) setStatus("Verification FAILED for " + counts.failed + " entries.", "error");
    else setStatus("Loaded " + items.length + " entries of the case.", "done");
  }

  async function run(caseRef) {
    if (!/^[A-Za-z0-9._-]{8,64}$/.test(caseRef)) { setStatus("A case pseudonym is 8 to 64 of A-Z a-z 0-9 . _ -", "error"); return; }
    if (!token) { setStatus("Enter an auditor token.", "error"); return; }
    try { await show(caseRef); } catch (err) { setStatus("Could not load the history: " + err.message, "error"); }
  }

  $("query").addEventListener("submit", (event) => {
    event.preventDefault();
    token = $("token").value.trim() || token;
    $("token").value = "";
    run($("case").value.trim());
  });

  // For tests and bookmarks: #token=…&case=… (the fragment never reaches the server). It is
  // read once and removed from the address bar and history.
  if (location.hash.length > 1) {
    const params = new URLSearchParams(location.hash.slice(1));
    history.replaceState(null, "", location.pathname + location.search);
    if (params.get("token")) token = params.get("token");
    if (params.get("case")) {
      $("case").value = params.get("case");
      run(params.get("case"));
    }
  }
})();
