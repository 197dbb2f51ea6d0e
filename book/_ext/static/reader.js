// The book's navigation shim (book/_ext/reader.py). pydata-sphinx-theme 0.17 opens the sidebar
// dialogs only from the first .primary-toggle / .secondary-toggle of the page; sphinx-book-theme
// 1.3 shows another pair in the article header, which would do nothing. Forward their clicks.
document.addEventListener("DOMContentLoaded", () => {
  for (const name of ["primary-toggle", "secondary-toggle"]) {
    const [bound, ...others] = document.querySelectorAll(`.${name}`);
    for (const button of others) {
      button.addEventListener("click", (event) => {
        event.preventDefault();
        event.stopPropagation();
        bound.click();
      });
    }
  }
});
