// smartbin web page, "Photos to label": the bin's review photos from /api/review, each given its
// true class (moved to labelled/<class>/ on the bin) or discarded. Text from the server is only set
// with textContent, never parsed as HTML. Uses app.js's $ and el (loaded first).
"use strict";

(() => {
  function problem(message) {
    const box = $("review-error");
    box.textContent = message || "";
    box.hidden = !message;
  }

  // fetch() throws a bare "Failed to fetch" when the bin is not there at all: said in words instead.
  async function ask(url, options) {
    try {
      return await fetch(url, options);
    } catch (err) {
      throw new Error("cannot reach the bin (is it running, and this page its address?)");
    }
  }

  async function answer(response) {
    let body = {};
    try { body = await response.json(); } catch (err) { /* not JSON: the status says enough */ }
    if (!response.ok) throw new Error(body.error || `the bin answered ${response.status}`);
    return body;
  }

  function note(listing) {
    const labelled = Object.values(listing.labelled || {}).reduce((sum, n) => sum + n, 0);
    const waiting = listing.waiting === 1 ? "1 photo waits" : `${listing.waiting} photos wait`;
    const newest = listing.photos.length < listing.waiting ? ` (the newest ${listing.photos.length} shown)` : "";
    $("review-note").textContent = `${waiting}${newest}; ${labelled} labelled so far.`;
    $("review-folder").textContent = listing.labelled_folder || "labelled/";
  }

  let shown = null;  // the last listing, kept up to date as photos are labelled or discarded

  async function act(item, photo, request, doneText) {
    problem("");
    if (request.label === "") {
      problem("Choose the item's class first.");
      return;
    }
    for (const control of item.querySelectorAll("button, select")) control.disabled = true;
    try {
      await answer(await ask(`/api/review/${encodeURIComponent(photo.name)}`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(request),
      }));
      item.querySelector(".controls").replaceChildren(el("span", { class: "done", role: "status", text: doneText }));
      // A thumbnail not loaded yet would now load nothing (the photo has moved): no broken image.
      const thumbnail = item.querySelector("img");
      if (thumbnail && !(thumbnail.complete && thumbnail.naturalWidth)) thumbnail.remove();
      if (shown) {
        shown.waiting = Math.max(0, shown.waiting - 1);
        shown.photos = shown.photos.filter((other) => other.name !== photo.name);
        if (request.label) shown.labelled[request.label] = (shown.labelled[request.label] || 0) + 1;
        note(shown);
      }
    } catch (err) {
      problem(`${photo.name}: ${err.message}`);
      for (const control of item.querySelectorAll("button, select")) control.disabled = false;
    }
  }

  function card(photo, labels) {
    const guess = photo.guess === null ? "another model's class" : photo.guess;
    const when = new Date(photo.taken).toLocaleString();
    const choices = labels.map((label) => el("option", { value: label, text: label }));
    if (photo.guess === null) choices.unshift(el("option", { value: "", text: "choose a class" }));
    const select = el("select", { "aria-label": `True class of the item of ${when}` }, choices);
    select.value = photo.guess === null ? "" : photo.guess;
    const item = el("li", { class: "review-item" }, [
      el("img", { src: `/api/review/${encodeURIComponent(photo.name)}`, loading: "lazy",
        alt: `Item of ${when}, guessed ${guess}` }),
      el("span", { text: `${when}: guessed ${guess}, ${(100 * photo.confidence).toFixed(0)} %` }),
    ]);
    const label = el("button", { type: "button", text: "Label" });
    const discard = el("button", { type: "button", text: "Discard" });
    label.addEventListener("click", () => act(item, photo, { label: select.value }, `Labelled ${select.value}`));
    discard.addEventListener("click", () => act(item, photo, { discard: true }, "Discarded"));
    item.append(el("div", { class: "controls" }, [select, label, discard]));
    return item;
  }

  async function load() {
    problem("");
    try {
      const listing = await answer(await ask("/api/review", { cache: "no-store" }));
      shown = listing;
      note(listing);
      $("review-list").replaceChildren(...listing.photos.map((photo) => card(photo, listing.labels)));
    } catch (err) {
      if (shown) {
        problem(`${err.message}; the photos below are as the bin listed them before.`);
      } else {
        $("review-note").textContent = "No review photos to show.";
        problem(err.message);
      }
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("review-refresh").addEventListener("click", load);
    load();
  });
})();
