// The nexus serve playground: a chat page over this server's own /v1/chat/completions (streamed).
// Plain browser JavaScript, no libraries and nothing loaded from elsewhere, so it works offline.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { history: [], controller: null, needsKey: false };

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

function setStatus(text) { $("status").textContent = text; }

function addMessage(role, text) {
  const div = document.createElement("div");
  div.className = `message ${role}`;
  const label = document.createElement("span");
  label.className = "role";
  label.textContent = role;
  const body = document.createElement("span");
  body.className = "content";
  body.textContent = text;
  div.append(label, body);
  $("messages").append(div);
  $("messages").scrollTop = $("messages").scrollHeight;
  return body;
}

async function errorText(response) {
  try {
    const body = await response.json();
    return body.error ? body.error.message : JSON.stringify(body);
  } catch (_) {
    return `HTTP ${response.status}`;
  }
}

async function loadModels() {
  const response = await fetch("/v1/models", { headers: headers() });
  if (response.status === 401) {
    state.needsKey = true;
    $("api-key-field").hidden = false;
    setStatus("this server needs an API key");
    return;
  }
  if (!response.ok) { setStatus(await errorText(response)); return; }
  const body = await response.json();
  const select = $("model");
  select.replaceChildren();
  for (const m of body.data) {
    const option = document.createElement("option");
    option.value = m.id;
    option.textContent = m.parent ? `${m.id} (LoRA on ${m.parent})` : m.id;
    select.append(option);
  }
  setStatus("ready");
}

function request(messages) {
  return {
    model: $("model").value || undefined,
    messages,
    stream: true,
    temperature: Number($("temperature").value),
    top_p: Number($("top-p").value),
    max_tokens: Number($("max-tokens").value) || 256,
  };
}

// Reads a server-sent-event stream and calls onEvent with each parsed `data:` payload.
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return;
        onEvent(JSON.parse(data));
      }
    }
  }
}

async function send(text) {
  const system = $("system").value.trim();
  const messages = (system ? [{ role: "system", content: system }] : []).concat(state.history);
  messages.push({ role: "user", content: text });
  addMessage("user", text);
  const out = addMessage("assistant", "");
  out.parentElement.classList.add("streaming");
  state.controller = new AbortController();
  $("send").disabled = true;
  $("stop").disabled = false;
  setStatus("generating…");
  let reply = "";
  let finish = null;
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(), body: JSON.stringify(request(messages)),
      signal: state.controller.signal,
    });
    if (response.status === 401) {
      $("api-key-field").hidden = false;
      throw new Error("missing or wrong API key: enter this server's key above");
    }
    if (!response.ok) throw new Error(await errorText(response));
    await readEvents(response, (event) => {
      if (event.error) throw new Error(event.error.message);
      for (const choice of event.choices || []) {
        if (choice.delta && choice.delta.content) {
          reply += choice.delta.content;
          out.textContent = reply;
          $("messages").scrollTop = $("messages").scrollHeight;
        }
        if (choice.finish_reason) finish = choice.finish_reason;
      }
    });
    setStatus(finish === "length" ? "stopped at max tokens" : "done");
  } catch (err) {
    if (err.name === "AbortError") {
      setStatus("stopped");
    } else {
      out.parentElement.classList.add("error");
      out.textContent = reply + (reply ? "\n" : "") + `error: ${err.message}`;
      setStatus("error");
    }
  } finally {
    out.parentElement.classList.remove("streaming");
    out.parentElement.dataset.done = "true";
    state.history.push({ role: "user", content: text }, { role: "assistant", content: reply });
    state.controller = null;
    $("send").disabled = false;
    $("stop").disabled = true;
  }
}

function bindRange(id) {
  const show = () => { $(`${id}-value`).textContent = $(id).value; };
  $(id).addEventListener("input", show);
  show();
}

document.addEventListener("DOMContentLoaded", () => {
  bindRange("temperature");
  bindRange("top-p");
  const saved = sessionStorage.getItem("nexus-api-key");
  if (saved) $("api-key").value = saved;
  $("api-key").addEventListener("change", () => {
    sessionStorage.setItem("nexus-api-key", $("api-key").value.trim());
    loadModels();
  });
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("message").value.trim();
    if (!text || state.controller) return;
    $("message").value = "";
    send(text);
  });
  $("message").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); }
  });
  $("stop").addEventListener("click", () => { if (state.controller) state.controller.abort(); });
  $("clear").addEventListener("click", () => { state.history = []; $("messages").replaceChildren(); });
  loadModels();
});
