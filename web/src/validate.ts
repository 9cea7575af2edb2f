// Input rules shared with the server: room names are 1–64 characters of
// letters, digits, '-' and '_'; display names are 1–64 characters.

export const ROOM_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
export const NAME_MAX = 64;

export function validateName(raw: string): string | null {
  const name = raw.trim();
  if (name === '') return 'Enter your name.';
  if ([...name].length > NAME_MAX) return `Your name can have at most ${NAME_MAX} characters.`;
  if (/[\u0000-\u001f\u007f]/.test(name)) return 'Your name contains characters that are not allowed.';
  return null;
}

export function validateRoom(raw: string): string | null {
  const room = raw.trim();
  if (room === '') return 'Enter a room name.';
  if (room.length > 64) return 'The room name can have at most 64 characters.';
  if (!ROOM_PATTERN.test(room)) {
    return 'The room name can only contain letters (A–Z, a–z), digits, hyphens (-) and underscores (_), without spaces.';
  }
  return null;
}
