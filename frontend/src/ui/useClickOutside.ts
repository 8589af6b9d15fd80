import { useEffect, useRef, type RefObject } from "react";

/** While `open`, a pointer pressed down outside `box` calls `onOutside` (a popover closes). */
export function useClickOutside(box: RefObject<HTMLElement | null>, open: boolean, onOutside: () => void): void {
  const latest = useRef(onOutside);
  latest.current = onOutside;
  useEffect(() => {
    if (!open) return;
    const onDown = (e: PointerEvent) => {
      if (box.current && !box.current.contains(e.target as Node)) latest.current();
    };
    document.addEventListener("pointerdown", onDown);
    return () => document.removeEventListener("pointerdown", onDown);
  }, [open, box]);
}
