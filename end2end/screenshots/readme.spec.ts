import { test, expect, Page } from '@playwright/test';

const OUT = '../docs/screenshots';

async function signUp(page: Page) {
  await page.goto('/sign-up');
  await expect(page.locator('[data-hydrated="true"]')).toBeVisible();
  await page.getByLabel('Name').fill('Ada Lovelace');
  await page.getByLabel('Email').fill(`ada-${Date.now()}-${Math.random()}@example.com`);
  await page.getByLabel('Password', { exact: true }).fill('a long password');
  await page.getByRole('button', { name: 'Create account' }).click();
  await expect(page).toHaveURL(/\/account\/cards$/);
  await expect(page.locator('[data-hydrated="true"]')).toBeVisible();
}

async function addCard(page: Page, number: string, submit = true) {
  const before = new URL(page.url()).searchParams.get('adding');
  await page.getByRole('button', { name: 'Add card' }).click();
  await expect.poll(() => new URL(page.url()).searchParams.get('adding')).not.toBe(before);
  const frame = page.frameLocator('iframe[title="Jetpay secure card form"]');
  await frame.getByLabel('Card number').pressSequentially(number);
  await frame.getByLabel(/Expiry date/).pressSequentially('12/34');
  await frame.getByLabel('Security code (CVC)').pressSequentially('123');
  await frame.getByLabel('Name on card').pressSequentially('Ada Lovelace');
  await frame.getByLabel('Postal code').pressSequentially('H2X 1Y4');
  if (submit) {
    await frame.getByRole('button', { name: 'Save card' }).click();
    await expect(frame.getByRole('heading', { name: 'Card received' })).toBeVisible();
  }
}

for (const colorScheme of ['light', 'dark'] as const) {
  for (const [device, viewport] of [
    ['desktop', { width: 1100, height: 820 }],
    ['phone', { width: 390, height: 844 }],
  ] as const) {
    const suffix = colorScheme === 'dark' ? '-dark' : '';
    test(`screenshots (${device}, ${colorScheme})`, async ({ page }) => {
      await page.emulateMedia({ colorScheme });
      await page.setViewportSize(viewport);
      await signUp(page);
      if (colorScheme === 'light') await page.screenshot({ path: `${OUT}/empty-${device}.png`, fullPage: true });

      await addCard(page, '4242 4242 4242 4242', false);
      await page.locator('body').click({ position: { x: 1, y: 1 } });
      await page.screenshot({ path: `${OUT}/pending-${device}${suffix}.png`, fullPage: true });
      await page.frameLocator('iframe').getByRole('button', { name: 'Save card' }).click();
      await expect(page.locator('[data-state="active"]')).toHaveCount(1);
      await page.screenshot({ path: `${OUT}/active-${device}${suffix}.png`, fullPage: true });

      if (colorScheme === 'light') {
        await addCard(page, '4000 0000 0000 0002');
        await expect(page.locator('[data-state="failed"]')).toHaveCount(1);
        await page.screenshot({ path: `${OUT}/failed-${device}.png`, fullPage: true });
      }
    });
  }
}
