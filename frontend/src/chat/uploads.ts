/* What the message box says about an upload. */

/** A failed upload's message: the server's text names the file already, else it is named. */
export function uploadError(fileName: string, message: string): string {
  return message.includes(fileName) ? message : `${fileName}: ${message}`;
}
