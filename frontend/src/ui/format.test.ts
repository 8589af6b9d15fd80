import { describe, expect, it } from "vitest";

import { fmtWhen } from "./format";

describe("fmtWhen", () => {
  const now = new Date(2026, 11, 7, 15, 30);
  it("gives the time today, the weekday this week, else the date", () => {
    expect(fmtWhen(new Date(2026, 11, 7, 9, 5).toISOString(), now)).toBe("09:05");
    expect(fmtWhen(new Date(2026, 11, 4, 9, 5).toISOString(), now)).toBe("Fri");
    expect(fmtWhen(new Date(2026, 10, 2, 9, 5).toISOString(), now)).toBe("2 Nov");
    expect(fmtWhen(new Date(2025, 10, 2, 9, 5).toISOString(), now)).toBe("2 Nov 2025");
  });
});
