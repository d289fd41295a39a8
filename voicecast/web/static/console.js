// voicecast console: text-to-speech preview on the audio page (no inline script: the CSP
// allows only script files from this origin). Posts the TTS form with the CSRF token in the
// X-CSRF-Token header and plays the WAV it gets back.
"use strict";

(function () {
  const button = document.getElementById("tts-preview");
  if (!button) {
    return;
  }
  const form = document.getElementById("tts-form");
  const player = document.getElementById("tts-player");
  const errorBox = document.getElementById("tts-preview-error");
  let lastUrl = null;

  button.addEventListener("click", async function () {
    const data = new FormData(form);
    const token = data.get("_csrf") || "";
    errorBox.hidden = true;
    errorBox.textContent = "";
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    try {
      const response = await fetch(button.dataset.url, {
        method: "POST",
        body: data,
        credentials: "same-origin",
        headers: { "X-CSRF-Token": token, "Accept": "application/json, audio/wav" },
      });
      if (!response.ok) {
        let message = response.status + " " + response.statusText;
        try {
          const body = await response.json();
          if (body && body.error && body.error.message) {
            message = body.error.message;
          }
        } catch (ignored) { /* not JSON */ }
        throw new Error(message);
      }
      const blob = await response.blob();
      if (lastUrl) {
        URL.revokeObjectURL(lastUrl);
      }
      lastUrl = URL.createObjectURL(blob);
      player.src = lastUrl;
      player.hidden = false;
      player.dataset.ready = "true";
      await player.play().catch(function () { /* autoplay refused: the controls remain */ });
    } catch (error) {
      errorBox.textContent = error.message;
      errorBox.hidden = false;
    } finally {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }
  });
})();
