import { describe, expect, it } from "vitest";

import { uploadError } from "./uploads";

describe("uploadError", () => {
  it("names the file once", () => {
    expect(uploadError("blob.bin", "blob.bin looks like binary data, not a document")).toBe("blob.bin looks like binary data, not a document");
    expect(uploadError("big.txt", "the request body is larger than 200 MB")).toBe("big.txt: the request body is larger than 200 MB");
  });
});
