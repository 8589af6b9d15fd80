import { StrictMode } from "react";
import { createRoot } from "react-dom/client";

import { App } from "./App";
import { adoptUrlToken } from "./api/client";
import "./styles.css";

adoptUrlToken(); // before anything asks the server

createRoot(document.getElementById("root") as HTMLElement).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
