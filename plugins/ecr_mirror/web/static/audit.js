// The audit view's only script: click a digest to copy it; a changed status box or "last" choice
// applies the filters at once. The pages work without it.
document.addEventListener("click", (event) => {
  const digest = event.target.closest("code.digest");
  if (!digest || !navigator.clipboard) return;
  navigator.clipboard.writeText(digest.dataset.digest).then(() => {
    digest.classList.add("copied");
    setTimeout(() => digest.classList.remove("copied"), 800);
  });
});
document.addEventListener("change", (event) => {
  const field = event.target;
  if (field.form && field.form.classList.contains("filters") && (field.name === "status" || field.name === "last")) {
    field.form.requestSubmit();
  }
});
