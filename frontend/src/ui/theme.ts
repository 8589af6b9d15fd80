/* Light or dark: follows the system until the person picks one (kept in localStorage). */

import { useEffect, useState } from "react";

export type ThemeChoice = "system" | "light" | "dark";
const KEY = "fleet.theme";
const ORDER: ThemeChoice[] = ["system", "light", "dark"];

function systemTheme(): "light" | "dark" {
  return window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

export function useTheme() {
  const [theme, setTheme] = useState<ThemeChoice>(() => (localStorage.getItem(KEY) as ThemeChoice | null) ?? "system");
  const [system, setSystem] = useState(systemTheme);
  useEffect(() => {
    const mq = window.matchMedia("(prefers-color-scheme: dark)");
    const on = () => setSystem(mq.matches ? "dark" : "light");
    mq.addEventListener("change", on);
    return () => mq.removeEventListener("change", on);
  }, []);
  const effective = theme === "system" ? system : theme;
  useEffect(() => {
    document.documentElement.dataset.theme = effective;
    if (theme === "system") localStorage.removeItem(KEY);
    else localStorage.setItem(KEY, theme);
  }, [theme, effective]);
  const cycle = () => setTheme(ORDER[(ORDER.indexOf(theme) + 1) % ORDER.length] as ThemeChoice);
  return { theme, effective, cycle };
}
